package alloc

import "slices"

// span is an inclusive range [lo, hi] of 128-bit integers.
type span struct{ lo, hi u128 }

// spanTree is an ordered set of disjoint spans keyed by lo: a B-tree in the
// style of CLRS / google/btree (items in every node, top-down split on insert,
// top-down borrow/merge on delete), written for one concrete item type so
// comparisons inline and nodes hold spans by value.
//
// Why a B-tree rather than a treap, skip list or sorted slice:
//   - worst-case O(log n) with no randomness, whatever order addresses come in;
//   - 32 bytes per span stored inline, at most half a node of slack, no
//     per-span heap object: the memory cost is what is allocated, not the pool;
//   - a lookup touches ~log_32(n) nodes (4 for a million spans) and binary
//     searches contiguous memory, where a treap chases ~2·log2(n) pointers;
//   - inserting in the middle moves at most maxItems spans, not n as a sorted
//     slice would (100k scattered addresses would memmove megabytes per insert).
//
// The tree does not coalesce by itself; addrSet/poolSet callers keep spans
// non-adjacent where they need that invariant.
type spanTree struct {
	root *node
	n    int // number of spans
}

const (
	degree   = 32
	maxItems = 2*degree - 1 // a full node is split before descending into it
	minItems = degree - 1   // a non-root node never has fewer after a delete
)

type node struct {
	items    []span  // sorted by lo
	children []*node // len(items)+1, or nil for a leaf
}

func (n *node) leaf() bool { return len(n.children) == 0 }

// find returns the index of the first item with lo >= x and whether it is == x.
func (n *node) find(x u128) (int, bool) {
	i, j := 0, len(n.items)
	for i < j {
		h := int(uint(i+j) >> 1)
		if n.items[h].lo.less(x) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i, i < len(n.items) && n.items[i].lo == x
}

// len returns the number of spans.
func (t *spanTree) len() int { return t.n }

// floor returns the span with the greatest lo <= x, or nil. The pointer
// aliases the tree: callers may change the span in place as long as the
// order of keys is preserved, and must not keep it across insert/delete.
func (t *spanTree) floor(x u128) *span {
	var best *span
	for n := t.root; n != nil; {
		i, found := n.find(x)
		if found {
			return &n.items[i]
		}
		if i > 0 {
			best = &n.items[i-1]
		}
		if n.leaf() {
			break
		}
		n = n.children[i]
	}
	return best
}

// ceil returns the span with the smallest lo >= x, or nil (same aliasing
// rules as floor).
func (t *spanTree) ceil(x u128) *span {
	var best *span
	for n := t.root; n != nil; {
		i, found := n.find(x)
		if found {
			return &n.items[i]
		}
		if i < len(n.items) {
			best = &n.items[i]
		}
		if n.leaf() {
			break
		}
		n = n.children[i]
	}
	return best
}

// insert adds s; no span with the same lo may be present.
func (t *spanTree) insert(s span) {
	t.n++
	if t.root == nil {
		t.root = &node{items: append(make([]span, 0, 4), s)}
		return
	}
	if len(t.root.items) >= maxItems {
		mid, right := t.root.split()
		t.root = &node{items: append(make([]span, 0, maxItems), mid), children: append(make([]*node, 0, maxItems+1), t.root, right)}
	}
	n := t.root
	for {
		i, _ := n.find(s.lo)
		if n.leaf() {
			n.items = slices.Insert(n.items, i, s)
			return
		}
		if len(n.children[i].items) >= maxItems {
			mid, right := n.children[i].split()
			n.items = slices.Insert(n.items, i, mid)
			n.children = slices.Insert(n.children, i+1, right)
			if mid.lo.less(s.lo) {
				i++
			}
		}
		n = n.children[i]
	}
}

// split moves the upper half of a full node into a new sibling and returns
// the median item, which the parent takes.
func (n *node) split() (span, *node) {
	const i = maxItems / 2
	mid := n.items[i]
	right := &node{items: append(make([]span, 0, maxItems), n.items[i+1:]...)}
	n.items = n.items[:i]
	if !n.leaf() {
		right.children = append(make([]*node, 0, maxItems+1), n.children[i+1:]...)
		clear(n.children[i+1:])
		n.children = n.children[:i+1]
	}
	return mid, right
}

// delete removes the span whose lo is key and reports whether it existed.
func (t *spanTree) delete(key u128) bool {
	if t.root == nil {
		return false
	}
	ok := t.root.remove(key)
	if len(t.root.items) == 0 {
		if t.root.leaf() {
			t.root = nil
		} else {
			t.root = t.root.children[0]
		}
	}
	if ok {
		t.n--
	}
	return ok
}

// remove deletes key below n. Before descending into a child it makes sure
// the child can lose an item (has > minItems), so no fix-up pass back up the
// tree is needed.
func (n *node) remove(key u128) bool {
	for {
		i, found := n.find(key)
		if n.leaf() {
			if found {
				n.items = slices.Delete(n.items, i, i+1)
			}
			return found
		}
		if len(n.children[i].items) <= minItems {
			n.grow(i) // reshapes n; search again
			continue
		}
		if found {
			// Replace with the predecessor, the maximum of the left subtree.
			n.items[i] = n.children[i].removeMax()
			return true
		}
		n = n.children[i]
	}
}

func (n *node) removeMax() span {
	for {
		if n.leaf() {
			s := n.items[len(n.items)-1]
			n.items = n.items[:len(n.items)-1]
			return s
		}
		i := len(n.items)
		if len(n.children[i].items) <= minItems {
			n.grow(i)
			continue
		}
		n = n.children[i]
	}
}

// grow gives child i more than minItems items by borrowing through the
// parent from a sibling that can spare one, or else merging it with a sibling.
func (n *node) grow(i int) {
	child := n.children[i]
	if i > 0 && len(n.children[i-1].items) > minItems {
		left := n.children[i-1]
		child.items = slices.Insert(child.items, 0, n.items[i-1])
		n.items[i-1] = left.items[len(left.items)-1]
		left.items = left.items[:len(left.items)-1]
		if !left.leaf() {
			last := len(left.children) - 1
			child.children = slices.Insert(child.children, 0, left.children[last])
			left.children[last] = nil
			left.children = left.children[:last]
		}
		return
	}
	if i < len(n.items) && len(n.children[i+1].items) > minItems {
		right := n.children[i+1]
		child.items = append(child.items, n.items[i])
		n.items[i] = right.items[0]
		right.items = slices.Delete(right.items, 0, 1)
		if !right.leaf() {
			child.children = append(child.children, right.children[0])
			right.children = slices.Delete(right.children, 0, 1)
		}
		return
	}
	if i >= len(n.items) {
		i--
	}
	left, right := n.children[i], n.children[i+1]
	left.items = append(left.items, n.items[i])
	left.items = append(left.items, right.items...)
	left.children = append(left.children, right.children...)
	n.items = slices.Delete(n.items, i, i+1)
	n.children = slices.Delete(n.children, i+1, i+2)
}

// ascend calls fn on every span in order until fn returns false.
func (t *spanTree) ascend(fn func(span) bool) {
	if t.root != nil {
		t.root.ascend(fn)
	}
}

func (n *node) ascend(fn func(span) bool) bool {
	for i, s := range n.items {
		if !n.leaf() && !n.children[i].ascend(fn) {
			return false
		}
		if !fn(s) {
			return false
		}
	}
	if !n.leaf() {
		return n.children[len(n.items)].ascend(fn)
	}
	return true
}

// addCoalesced inserts s, which must not intersect any span, merging it with
// a neighbour that ends at s.lo-1 or starts at s.hi+1, so that spans stay
// non-adjacent. left must be t.floor(s.lo) (the caller usually has it).
func (t *spanTree) addCoalesced(s span, left *span) {
	leftAdj := left != nil && left.hi.inc() == s.lo
	var right *span
	if s.hi != maxU128 {
		if r := t.floor(s.hi.inc()); r != nil && r.lo == s.hi.inc() {
			right = r
		}
	}
	switch {
	case leftAdj && right != nil:
		left.hi = right.hi
		t.delete(right.lo)
	case leftAdj:
		left.hi = s.hi
	case right != nil:
		right.lo = s.lo // key decreases but stays above left.hi: order kept
	default:
		t.insert(s)
	}
}

// removeFrom deletes s from c, the span containing all of s (c = t.floor(s.lo)).
func (t *spanTree) removeFrom(s span, c *span) {
	switch {
	case c.lo == s.lo && c.hi == s.hi:
		t.delete(c.lo)
	case c.lo == s.lo:
		c.lo = s.hi.inc() // key grows but stays below the next span: order kept
	case c.hi == s.hi:
		c.hi = s.lo.dec()
	default:
		tail := span{s.hi.inc(), c.hi}
		c.hi = s.lo.dec() // before insert, which may move c
		t.insert(tail)
	}
}
