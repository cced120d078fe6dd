package alloc

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// checkTree verifies the B-tree shape (node fill, uniform leaf depth,
// child counts), key order and the span count.
func checkTree(t *spanTree) error {
	if t.root == nil {
		if t.n != 0 {
			return fmt.Errorf("empty tree with n=%d", t.n)
		}
		return nil
	}
	leafDepth := -1
	count := 0
	var prev *span
	var walk func(n *node, depth int, isRoot bool) error
	walk = func(n *node, depth int, isRoot bool) error {
		if len(n.items) > maxItems || len(n.items) == 0 || (!isRoot && len(n.items) < minItems) {
			return fmt.Errorf("node at depth %d has %d items", depth, len(n.items))
		}
		if !n.leaf() && len(n.children) != len(n.items)+1 {
			return fmt.Errorf("node with %d items has %d children", len(n.items), len(n.children))
		}
		if n.leaf() {
			if leafDepth == -1 {
				leafDepth = depth
			} else if leafDepth != depth {
				return fmt.Errorf("leaves at depths %d and %d", leafDepth, depth)
			}
		}
		for i := range n.items {
			if !n.leaf() {
				if err := walk(n.children[i], depth+1, false); err != nil {
					return err
				}
			}
			s := &n.items[i]
			if s.hi.less(s.lo) {
				return fmt.Errorf("reversed span %v", *s)
			}
			if prev != nil && !prev.hi.less(s.lo) {
				return fmt.Errorf("spans %v and %v out of order or overlapping", *prev, *s)
			}
			prev = s
			count++
		}
		if !n.leaf() {
			return walk(n.children[len(n.items)], depth+1, false)
		}
		return nil
	}
	if err := walk(t.root, 0, true); err != nil {
		return err
	}
	if count != t.n {
		return fmt.Errorf("counted %d spans, n=%d", count, t.n)
	}
	return nil
}

func height(t *spanTree) int {
	h := 0
	for n := t.root; n != nil; h++ {
		if n.leaf() {
			n = nil
		} else {
			n = n.children[0]
		}
	}
	return h
}

// checkCoalesced additionally requires that no two spans touch.
func checkCoalesced(t *spanTree) error {
	if err := checkTree(t); err != nil {
		return err
	}
	var prev *span
	var err error
	t.ascend(func(s span) bool {
		if prev != nil && prev.hi.inc() == s.lo {
			err = fmt.Errorf("adjacent spans %v %v", *prev, s)
			return false
		}
		prev = &s
		return true
	})
	return err
}

// TestSpanTreeModel drives insert/delete/floor/ceil with enough keys for a
// tree three levels deep, comparing with a sorted slice.
func TestSpanTreeModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var tr spanTree
	var model []uint64 // sorted keys
	const keySpace = 40000
	key := func(k uint64) u128 { return u128{k >> 7, k} } // exercise both words
	for step := range 120000 {
		k := r.Uint64N(keySpace)
		i, found := slices.BinarySearch(model, k)
		// Grow for the first half, then shrink to empty.
		insert := step < 60000 && r.IntN(4) != 0 || step >= 60000 && r.IntN(4) == 0
		switch {
		case insert && !found:
			tr.insert(span{key(k), key(k)})
			model = slices.Insert(model, i, k)
		case !insert:
			if got := tr.delete(key(k)); got != found {
				t.Fatalf("step %d: delete(%d) = %v, want %v", step, k, got, found)
			}
			if found {
				model = slices.Delete(model, i, i+1)
			}
		}
		q := r.Uint64N(keySpace + 2)
		j, qf := slices.BinarySearch(model, q)
		var wantFloor, wantCeil *uint64
		if qf {
			wantFloor, wantCeil = &model[j], &model[j]
		} else {
			if j > 0 {
				wantFloor = &model[j-1]
			}
			if j < len(model) {
				wantCeil = &model[j]
			}
		}
		for name, pair := range map[string]struct {
			got  *span
			want *uint64
		}{"floor": {tr.floor(key(q)), wantFloor}, "ceil": {tr.ceil(key(q)), wantCeil}} {
			if (pair.got == nil) != (pair.want == nil) || pair.got != nil && pair.got.lo != key(*pair.want) {
				t.Fatalf("step %d: %s(%d) = %v, want %v", step, name, q, pair.got, pair.want)
			}
		}
		if step%5000 == 0 || step == 59999 {
			if err := checkTree(&tr); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			if tr.len() != len(model) {
				t.Fatalf("step %d: len %d, want %d", step, tr.len(), len(model))
			}
		}
		if step == 59999 {
			if h := height(&tr); h < 3 {
				t.Fatalf("tree only %d levels deep with %d spans; test too weak", h, tr.len())
			}
		}
	}
	// Drain the rest, in random order, down to a nil root.
	r.Shuffle(len(model), func(i, j int) { model[i], model[j] = model[j], model[i] })
	for _, k := range model {
		if !tr.delete(key(k)) {
			t.Fatalf("delete(%d) failed", k)
		}
	}
	if tr.root != nil || tr.len() != 0 {
		t.Fatalf("tree not empty after draining: len %d", tr.len())
	}
}

func TestSpanTreeAscendStops(t *testing.T) {
	var tr spanTree
	for i := range uint64(5000) {
		tr.insert(span{u128{0, i * 2}, u128{0, i * 2}})
	}
	var seen []uint64
	tr.ascend(func(s span) bool {
		seen = append(seen, s.lo.lo)
		return len(seen) < 100
	})
	if len(seen) != 100 || seen[99] != 198 {
		t.Fatalf("ascend visited %d spans, last %d", len(seen), seen[len(seen)-1])
	}
}

func TestU128(t *testing.T) {
	if got := maxU128.inc(); got != (u128{}) {
		t.Errorf("max+1 = %v", got)
	}
	if got := (u128{}).dec(); got != maxU128 {
		t.Errorf("0-1 = %v", got)
	}
	if got := (u128{0, ^uint64(0)}).inc(); got != (u128{1, 0}) {
		t.Errorf("carry: %v", got)
	}
	if got := (u128{1, 0}).dec(); got != (u128{0, ^uint64(0)}) {
		t.Errorf("borrow: %v", got)
	}
	if _, c := maxU128.add(u128{0, 1}); !c {
		t.Error("no carry out of max+1")
	}
	for n := 0; n <= 128; n++ {
		if got := lowMask(n).onesCount(); got != n {
			t.Errorf("lowMask(%d) has %d ones", n, got)
		}
	}
	if got := (u128{1, 5}).sub(u128{0, 7}); got != (u128{0, ^uint64(0) - 1}) {
		t.Errorf("sub = %v", got)
	}
	if got, want := (u128{1, 0}).big().String(), "18446744073709551616"; got != want {
		t.Errorf("big = %s", got)
	}
	if v, c := alignAfter(u128{0, 5}, lowMask(3)); c == false || v != (u128{0, 8}) {
		t.Errorf("alignAfter(5, /3) = %v %v", v, c)
	}
	if _, ok := alignAfter(maxU128.dec(), lowMask(1)); ok {
		t.Error("alignAfter past the end of space must fail")
	}
}
