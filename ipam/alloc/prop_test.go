package alloc

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// addrModel is the obviously-correct reference: a map of allocated
// addresses and a list of the dynamic range, scanned linearly.
type addrModel struct {
	pool     netip.Prefix
	reserved map[netip.Addr]bool
	dyn      []netip.Addr // allocatable by Allocate, ascending
	set      map[netip.Addr]bool
	last     netip.Addr   // last dynamic allocation (serial cursor)
	list     []netip.Addr // members of set in no order, for random picks
	idx      map[netip.Addr]int
}

func (m *addrModel) add(x netip.Addr) {
	m.set[x] = true
	m.idx[x] = len(m.list)
	m.list = append(m.list, x)
}

func (m *addrModel) del(x netip.Addr) {
	i, ok := m.idx[x]
	if !ok {
		return
	}
	end := m.list[len(m.list)-1]
	m.list[i], m.idx[end] = end, i
	m.list = m.list[:len(m.list)-1]
	delete(m.idx, x)
	delete(m.set, x)
}

func newAddrModel(pool, sub netip.Prefix) *addrModel {
	pool = pool.Masked()
	m := &addrModel{pool: pool, reserved: map[netip.Addr]bool{}, set: map[netip.Addr]bool{}, idx: map[netip.Addr]int{}}
	hostBits := pool.Addr().BitLen() - pool.Bits()
	first := pool.Addr()
	last := lastAddr(pool)
	if pool.Addr().Is6() || hostBits >= 2 {
		m.reserved[first] = true
	}
	if pool.Addr().Is4() && hostBits >= 2 {
		m.reserved[last] = true
	}
	r := pool
	if sub.IsValid() {
		r = sub.Masked()
	}
	for x := r.Addr(); x.IsValid() && r.Contains(x); x = x.Next() {
		if !m.reserved[x] {
			m.dyn = append(m.dyn, x)
		}
	}
	return m
}

// lastAddr sets the host bits with byte arithmetic, independently of u128.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (m *addrModel) alloc(serial bool) (netip.Addr, string) {
	start := 0
	if serial && m.last.IsValid() {
		start = len(m.dyn)
		for i, x := range m.dyn {
			if x.Compare(m.last) > 0 {
				start = i
				break
			}
		}
	}
	for k := range m.dyn {
		x := m.dyn[(start+k)%len(m.dyn)]
		if !m.set[x] {
			m.add(x)
			m.last = x
			return x, "ok"
		}
	}
	return netip.Addr{}, "exhausted"
}

func (m *addrModel) specific(x netip.Addr) string {
	switch {
	case !m.pool.Contains(x):
		return "outofrange"
	case m.reserved[x]:
		return "reserved"
	case m.set[x]:
		return "inuse"
	}
	m.add(x)
	return "ok"
}

func (m *addrModel) release(x netip.Addr) string {
	if !m.pool.Contains(x) {
		return "outofrange"
	}
	m.del(x)
	return "ok"
}

func (m *addrModel) sorted() []netip.Addr {
	s := make([]netip.Addr, 0, len(m.set))
	for x := range m.set {
		s = append(s, x)
	}
	slices.SortFunc(s, netip.Addr.Compare)
	return s
}

// compare checks everything observable about a against m.
func compare(a *Allocator, m *addrModel) error {
	want := m.sorted()
	got := allAddrs(a)
	if !slices.Equal(got, want) {
		return fmt.Errorf("allocated set\n got %v\nwant %v", got, want)
	}
	if a.Count() != uint64(len(want)) {
		return fmt.Errorf("Count %d, want %d", a.Count(), len(want))
	}
	runs := 0
	for i, x := range want {
		if i == 0 || want[i-1].Next() != x {
			runs++
		}
	}
	if a.NumRanges() != runs {
		return fmt.Errorf("NumRanges %d, want %d", a.NumRanges(), runs)
	}
	free := 0
	for _, x := range m.dyn {
		if !m.set[x] {
			free++
		}
	}
	if a.Free().Int64() != int64(free) {
		return fmt.Errorf("Free %v, want %d", a.Free(), free)
	}
	return checkCoalesced(&a.set)
}

// pickAddr returns an address mostly inside the pool, sometimes just
// outside it, of the other family, invalid or zoned.
func pickAddr(pool netip.Prefix, m *addrModel, k uint64, sel byte) netip.Addr {
	first, last := pool.Masked().Addr(), lastAddr(pool)
	switch sel % 16 {
	case 0:
		return first.Prev() // invalid below ::/0.0.0.0
	case 1:
		return last.Next()
	case 2:
		if first.Is4() {
			return netip.MustParseAddr("fd00::1")
		}
		return netip.MustParseAddr("10.0.0.1")
	case 3:
		return first
	case 4:
		return last
	case 5:
		if first.Is6() {
			return first.Next().WithZone("eth0")
		}
		return netip.AddrFrom16(first.As16()) // 4in6
	}
	if len(m.list) > 0 && sel%2 == 0 {
		return m.list[k%uint64(len(m.list))]
	}
	// An offset into the pool from one end or the other.
	hostBits := pool.Addr().BitLen() - pool.Bits()
	if hostBits < 64 {
		k %= 1 << hostBits
	}
	x := fromAddr(first)
	if sel%3 == 0 {
		x = fromAddr(last).sub(u128{0, k})
	} else {
		x, _ = x.add(u128{0, k})
	}
	return toAddr(x, first.Is4())
}

type propCase struct{ pool, sub string }

var propCases = []propCase{
	{"192.168.1.0/24", ""},
	{"192.168.1.0/24", "192.168.1.64/27"},
	{"192.168.1.0/24", "192.168.1.0/26"},
	{"192.168.1.0/24", "192.168.1.224/27"},
	{"10.0.0.0/22", "10.0.3.0/24"},
	{"0.0.0.0/24", ""},
	{"255.255.255.0/24", ""},
	{"10.0.0.0/29", ""},
	{"10.0.0.8/30", ""},
	{"10.0.0.8/31", ""},
	{"10.0.0.9/32", ""},
	{"fd00::/120", ""},
	{"fd00::/120", "fd00::80/121"},
	{"fd00::/120", "fd00::/124"},
	{"::/120", ""},
	{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", ""},
	{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"},
	{"fd00::/126", ""},
	{"fd00::/127", ""},
	{"fd00::/128", ""},
}

// runOps interprets ops (opcode, operand pairs) against an Allocator and the
// model, failing on the first difference. Every so often the allocator is
// replaced by one rebuilt from its (JSON round-tripped) snapshot, so all
// later steps also check that restoring is exact (IsAllocated ops with
// sel&snapMask == 0 trigger it).
func runOps(t *testing.T, c propCase, ops []byte, checkEvery int, snapMask byte) {
	t.Helper()
	pool, sub := pfx(c.pool), pfx(c.sub)
	a, err := New(pool, sub)
	if err != nil {
		t.Fatal(err)
	}
	m := newAddrModel(pool, sub)
	for i := 0; i+2 < len(ops); i += 3 {
		op, sel, k := ops[i], ops[i+1], uint64(ops[i+2])|uint64(ops[i+1])<<8
		var what, got, want string
		switch op % 10 {
		case 0, 1:
			x, err := a.Allocate()
			mx, mk := m.alloc(false)
			what, got, want = "Allocate", fmt.Sprint(x, errKind(err)), fmt.Sprint(mx, mk)
		case 2, 3:
			x, err := a.AllocateSerial()
			mx, mk := m.alloc(true)
			what, got, want = "AllocateSerial", fmt.Sprint(x, errKind(err)), fmt.Sprint(mx, mk)
		case 4, 5:
			x := pickAddr(pool, m, k, sel)
			what, got, want = "AllocateSpecific "+x.String(), errKind(a.AllocateSpecific(x)), m.specific(x)
		case 6, 7, 8:
			x := pickAddr(pool, m, k, sel)
			what, got, want = "Release "+x.String(), errKind(a.Release(x)), m.release(x)
		case 9:
			x := pickAddr(pool, m, k, sel)
			what, got, want = "IsAllocated "+x.String(), fmt.Sprint(a.IsAllocated(x)), fmt.Sprint(m.set[x])
			if sel&snapMask == 0 {
				data, err := json.Marshal(a.Snapshot())
				if err != nil {
					t.Fatal(err)
				}
				var s Snapshot
				if err := json.Unmarshal(data, &s); err != nil {
					t.Fatal(err)
				}
				if a, err = FromSnapshot(s); err != nil {
					t.Fatalf("FromSnapshot(%s): %v", data, err)
				}
				r, err := Restore(pool, sub, allAddrs(a))
				if err != nil || !slices.Equal(allAddrs(r), allAddrs(a)) {
					t.Fatalf("Restore from address list: %v", err)
				}
			}
		}
		if got != want {
			t.Fatalf("%s %s step %d: %s = %s, want %s", c.pool, c.sub, i/3, what, got, want)
		}
		if checkEvery > 0 && (i/3)%checkEvery == 0 || i+5 >= len(ops) {
			if err := compare(a, m); err != nil {
				t.Fatalf("%s %s step %d after %s: %v", c.pool, c.sub, i/3, what, err)
			}
		}
	}
}

func TestPropertyAllocator(t *testing.T) {
	for i, c := range propCases {
		t.Run(c.pool+"_"+c.sub, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(i), 42))
			for round := range 4 {
				ops := make([]byte, 3*1500)
				for j := range ops {
					ops[j] = byte(r.Uint32())
				}
				// Bias some rounds towards filling the pool, others towards churn.
				if round%2 == 1 {
					for j := 0; j < len(ops); j += 3 {
						if r.IntN(3) == 0 {
							ops[j] = byte(r.IntN(4))
						}
					}
				}
				runOps(t, c, ops, 1, 3)
			}
		})
	}
}

// TestPropertyLargeScattered builds thousands of ranges (a deep tree) with
// scattered specific allocations and releases in a /16.
func TestPropertyLargeScattered(t *testing.T) {
	c := propCase{"10.7.0.0/16", "10.7.128.0/17"}
	r := rand.New(rand.NewPCG(7, 7))
	ops := make([]byte, 3*40000)
	for j := 0; j < len(ops); j += 3 {
		switch n := r.IntN(100); {
		case n < 55:
			ops[j] = 4
		case n < 85:
			ops[j] = 6
		case n < 95:
			ops[j] = byte(r.IntN(4))
		default:
			ops[j] = 9
		}
		ops[j+1] = byte(6 + 2*r.IntN(125)) // sel: in-pool offset, existing address on even
		if r.IntN(2) == 0 {
			ops[j+1]++
		}
		ops[j+2] = byte(r.Uint32())
	}
	runOps(t, c, ops, 2000, 63)
}

// FuzzAllocator: data[0] picks the pool, the rest are (op, sel, operand) triples.
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 0, 0, 4, 9, 1, 6, 9, 1, 0, 0, 0})
	f.Add([]byte{10, 4, 3, 0, 5, 4, 0, 0, 0, 0, 2, 0, 0, 2, 0, 0, 6, 1, 0, 2, 0, 0})
	f.Add([]byte{16, 2, 0, 0, 2, 0, 0, 2, 0, 0, 6, 8, 1, 2, 0, 0, 9, 0, 0})
	f.Add([]byte{19, 0, 0, 0, 4, 3, 0, 4, 4, 0, 6, 3, 0})
	f.Add([]byte{12, 4, 6, 200, 2, 0, 0, 9, 4, 0, 2, 0, 0, 6, 6, 200, 2, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 4 || len(data) > 3*2000 {
			return
		}
		runOps(t, propCases[int(data[0])%len(propCases)], data[1:], 1, 3)
	})
}
