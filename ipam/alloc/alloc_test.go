package alloc

import (
	"encoding/json"
	"errors"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(s)
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func mustNew(t testing.TB, pool, sub string) *Allocator {
	t.Helper()
	a, err := New(pfx(pool), pfx(sub))
	if err != nil {
		t.Fatalf("New(%q, %q): %v", pool, sub, err)
	}
	return a
}

// errKind names the sentinel an error wraps, so results compare as strings.
func errKind(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{ErrPoolExhausted, "exhausted"}, {ErrInUse, "inuse"}, {ErrOutOfRange, "outofrange"},
		{ErrReserved, "reserved"}, {ErrInvalidPrefix, "invalid"}, {ErrNoMoreSubnets, "nomoresubnets"},
		{ErrPoolOverlap, "overlap"}, {ErrUnknownPool, "unknownpool"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	if err == nil {
		return "ok"
	}
	return "other: " + err.Error()
}

func wantAlloc(t *testing.T, what string, f func() (netip.Addr, error), want string) {
	t.Helper()
	got, err := f()
	if want == "exhausted" {
		if !errors.Is(err, ErrPoolExhausted) {
			t.Fatalf("%s = %v, %v; want ErrPoolExhausted", what, got, err)
		}
		return
	}
	if err != nil || got != ip(want) {
		t.Fatalf("%s = %v, %v; want %s", what, got, err, want)
	}
}

func wantErr(t *testing.T, what string, err error, kind string) {
	t.Helper()
	if got := errKind(err); got != kind {
		t.Fatalf("%s: error %v (%s), want %s", what, err, got, kind)
	}
}

func allAddrs(a *Allocator) []netip.Addr { return slices.Collect(a.All()) }

func TestAllocateFirstFreeV4(t *testing.T) {
	a := mustNew(t, "192.168.1.0/24", "")
	for _, want := range []string{"192.168.1.1", "192.168.1.2", "192.168.1.3"} {
		wantAlloc(t, "Allocate", a.Allocate, want)
	}
	if err := a.Release(ip("192.168.1.2")); err != nil {
		t.Fatal(err)
	}
	if a.NumRanges() != 2 || a.Count() != 2 {
		t.Fatalf("after release: %v", a)
	}
	wantAlloc(t, "Allocate refills the hole", a.Allocate, "192.168.1.2")
	wantAlloc(t, "Allocate", a.Allocate, "192.168.1.4")
	for range 250 {
		if _, err := a.Allocate(); err != nil {
			t.Fatal(err)
		}
	}
	if !a.IsAllocated(ip("192.168.1.254")) || a.Count() != 254 || a.NumRanges() != 1 || a.Free().Sign() != 0 {
		t.Fatalf("full pool: %v free %v", a, a.Free())
	}
	_, err := a.Allocate()
	wantErr(t, "Allocate on full pool", err, "exhausted")
	if !strings.Contains(err.Error(), "192.168.1.0/24") {
		t.Errorf("exhausted error %q does not name the pool", err)
	}
	_, err = a.AllocateSerial()
	wantErr(t, "AllocateSerial on full pool", err, "exhausted")
}

func TestErrorsV4(t *testing.T) {
	a := mustNew(t, "192.168.1.0/24", "")
	for _, c := range []struct {
		addr netip.Addr
		kind string
	}{
		{ip("192.168.1.0"), "reserved"},
		{ip("192.168.1.255"), "reserved"},
		{ip("192.168.2.1"), "outofrange"},
		{ip("192.168.0.255"), "outofrange"},
		{ip("::1"), "outofrange"},
		{ip("::ffff:192.168.1.5"), "outofrange"}, // 4in6 is IPv6: callers Unmap
		{netip.Addr{}, "outofrange"},
		{ip("192.168.1.7"), "ok"},
		{ip("192.168.1.7"), "inuse"},
	} {
		wantErr(t, "AllocateSpecific("+c.addr.String()+")", a.AllocateSpecific(c.addr), c.kind)
	}
	err := a.AllocateSpecific(ip("192.168.1.7"))
	if !strings.Contains(err.Error(), "192.168.1.7") || errors.Is(err, ErrReserved) || errors.Is(err, ErrOutOfRange) {
		t.Errorf("in-use error %q: must name the address and match only ErrInUse", err)
	}
	if err := a.AllocateSpecific(ip("192.168.1.0")); !strings.Contains(err.Error(), "192.168.1.0") {
		t.Errorf("reserved error %q must name the address", err)
	}
	// Release: harmless for anything in the pool, an error outside it.
	for _, c := range []struct {
		addr netip.Addr
		kind string
	}{
		{ip("192.168.1.9"), "ok"},   // never allocated
		{ip("192.168.1.0"), "ok"},   // reserved: stays reserved
		{ip("192.168.1.255"), "ok"}, // reserved
		{ip("192.168.1.7"), "ok"},
		{ip("192.168.1.7"), "ok"}, // twice
		{ip("10.0.0.1"), "outofrange"},
		{ip("fe80::1"), "outofrange"},
		{netip.Addr{}, "outofrange"},
	} {
		wantErr(t, "Release("+c.addr.String()+")", a.Release(c.addr), c.kind)
	}
	if a.Count() != 0 || a.IsAllocated(ip("192.168.1.0")) || a.IsAllocated(ip("192.168.1.7")) {
		t.Fatalf("after releases: %v", a)
	}
	wantErr(t, "reserved after Release", a.AllocateSpecific(ip("192.168.1.0")), "reserved")
	wantAlloc(t, "Allocate", a.Allocate, "192.168.1.1")
}

func TestErrorsV6(t *testing.T) {
	a := mustNew(t, "2001:db8::/64", "")
	wantErr(t, "network", a.AllocateSpecific(ip("2001:db8::")), "reserved")
	wantErr(t, "last address is not reserved in IPv6", a.AllocateSpecific(ip("2001:db8::ffff:ffff:ffff:ffff")), "ok")
	wantErr(t, "other family", a.AllocateSpecific(ip("10.0.0.1")), "outofrange")
	wantErr(t, "outside", a.AllocateSpecific(ip("2001:db8:0:1::1")), "outofrange")
	wantErr(t, "zoned", a.AllocateSpecific(ip("2001:db8::5%eth0")), "outofrange")
	wantErr(t, "in use", a.AllocateSpecific(ip("2001:db8::ffff:ffff:ffff:ffff")), "inuse")
	wantAlloc(t, "Allocate", a.Allocate, "2001:db8::1")
	wantErr(t, "release other family", a.Release(ip("10.0.0.1")), "outofrange")
	if a.IsAllocated(ip("10.0.0.1")) || a.IsAllocated(netip.Addr{}) || !a.IsAllocated(ip("2001:db8::1")) {
		t.Error("IsAllocated")
	}
}

func TestNewValidation(t *testing.T) {
	for _, c := range []struct {
		pool, sub netip.Prefix
		kind      string
	}{
		{netip.Prefix{}, netip.Prefix{}, "invalid"},
		{pfx("10.0.0.0/8"), netip.PrefixFrom(ip("10.0.0.0"), 40), "invalid"},
		{pfx("10.0.0.0/16"), pfx("10.1.0.0/24"), "outofrange"},
		{pfx("10.0.0.0/16"), pfx("10.0.0.0/8"), "outofrange"}, // larger than the pool
		{pfx("10.0.0.0/16"), pfx("fd00::/120"), "outofrange"},
		{pfx("fd00::/64"), pfx("10.0.0.0/24"), "outofrange"},
		{pfx("10.0.0.0/16"), pfx("10.0.3.0/24"), "ok"},
		{pfx("10.0.0.5/16"), pfx("10.0.3.7/24"), "ok"}, // masked
	} {
		_, err := New(c.pool, c.sub)
		wantErr(t, "New("+c.pool.String()+", "+c.sub.String()+")", err, c.kind)
	}
	a := mustNew(t, "10.0.0.5/16", "10.0.0.9/16")
	if a.Pool() != pfx("10.0.0.0/16") || a.SubPool().IsValid() {
		t.Errorf("Pool %v SubPool %v: want masked pool, no sub-pool when equal", a.Pool(), a.SubPool())
	}
}

// TestSmallPools covers the prefix lengths whose reservations differ, and
// pools at the very top of the address space where an off-by-one overflows.
func TestSmallPools(t *testing.T) {
	for _, c := range []struct {
		pool     string
		alloc    []string // successive Allocate results until exhaustion
		reserved []string
	}{
		{"10.0.0.4/30", []string{"10.0.0.5", "10.0.0.6"}, []string{"10.0.0.4", "10.0.0.7"}},
		{"10.0.0.4/31", []string{"10.0.0.4", "10.0.0.5"}, nil},
		{"10.0.0.7/32", []string{"10.0.0.7"}, nil},
		{"255.255.255.255/32", []string{"255.255.255.255"}, nil},
		{"255.255.255.254/31", []string{"255.255.255.254", "255.255.255.255"}, nil},
		{"255.255.255.252/30", []string{"255.255.255.253", "255.255.255.254"}, []string{"255.255.255.252", "255.255.255.255"}},
		{"0.0.0.0/31", []string{"0.0.0.0", "0.0.0.1"}, nil},
		{"fd00::/126", []string{"fd00::1", "fd00::2", "fd00::3"}, []string{"fd00::"}},
		{"fd00::/127", []string{"fd00::1"}, []string{"fd00::"}},
		{"fd00::5/128", nil, []string{"fd00::5"}},
		{"::/128", nil, []string{"::"}},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", nil, []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127", []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"}},
	} {
		t.Run(c.pool, func(t *testing.T) {
			for _, serial := range []bool{false, true} {
				a := mustNew(t, c.pool, "")
				if got := a.Free().Int64(); got != int64(len(c.alloc)) {
					t.Fatalf("Free = %d, want %d", got, len(c.alloc))
				}
				f := a.Allocate
				if serial {
					f = a.AllocateSerial
				}
				for _, want := range c.alloc {
					wantAlloc(t, "Allocate", f, want)
				}
				wantAlloc(t, "Allocate", f, "exhausted")
				wantAlloc(t, "Allocate again", f, "exhausted")
				for _, r := range c.reserved {
					wantErr(t, "specific "+r, a.AllocateSpecific(ip(r)), "reserved")
				}
				// Release and re-take each address by hand.
				for _, s := range c.alloc {
					wantErr(t, "release", a.Release(ip(s)), "ok")
					wantErr(t, "specific", a.AllocateSpecific(ip(s)), "ok")
				}
				if a.Count() != uint64(len(c.alloc)) || a.Free().Sign() != 0 {
					t.Fatalf("Count %d Free %v", a.Count(), a.Free())
				}
				if err := checkCoalesced(&a.set); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestSlashZero(t *testing.T) {
	a := mustNew(t, "0.0.0.0/0", "")
	wantAlloc(t, "Allocate", a.Allocate, "0.0.0.1")
	wantErr(t, "network", a.AllocateSpecific(ip("0.0.0.0")), "reserved")
	wantErr(t, "broadcast", a.AllocateSpecific(ip("255.255.255.255")), "reserved")
	wantErr(t, "top", a.AllocateSpecific(ip("255.255.255.254")), "ok")
	wantErr(t, "mid", a.AllocateSpecific(ip("128.0.0.0")), "ok")
	if got, want := a.Free(), big.NewInt(1<<32-2-3); got.Cmp(want) != 0 {
		t.Errorf("Free = %v, want %v", got, want)
	}
	if a.Count() != 3 || a.NumRanges() != 3 {
		t.Errorf("%v", a)
	}

	b := mustNew(t, "::/0", "")
	wantAlloc(t, "Allocate", b.Allocate, "::1")
	wantErr(t, "network", b.AllocateSpecific(ip("::")), "reserved")
	wantErr(t, "top", b.AllocateSpecific(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), "ok")
	wantErr(t, "4in6", b.AllocateSpecific(ip("::ffff:10.0.0.1")), "ok")
	wantErr(t, "v4 addr in v6 pool", b.AllocateSpecific(ip("10.0.0.1")), "outofrange")
	want := new(big.Int).Lsh(big.NewInt(1), 128)
	want.Sub(want, big.NewInt(1+3))
	if got := b.Free(); got.Cmp(want) != 0 {
		t.Errorf("Free = %v, want %v", got, want)
	}
	// Serial from the top wraps to the bottom of the space.
	wantAlloc(t, "serial", b.AllocateSerial, "::2")
	wantErr(t, "release", b.Release(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), "ok")
	wantErr(t, "specific", b.AllocateSpecific(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")), "ok")
}

func TestSubPool(t *testing.T) {
	a := mustNew(t, "10.1.0.0/16", "10.1.2.0/24")
	wantAlloc(t, "first of sub-pool (not the pool's network address)", a.Allocate, "10.1.2.0")
	if got := a.Free().Int64(); got != 255 {
		t.Fatalf("Free = %d", got)
	}
	wantErr(t, "specific outside the sub-pool is allowed", a.AllocateSpecific(ip("10.1.5.5")), "ok")
	wantErr(t, "specific inside", a.AllocateSpecific(ip("10.1.2.1")), "ok")
	if got := a.Free().Int64(); got != 254 {
		t.Fatalf("Free = %d: allocations outside the sub-pool must not count", got)
	}
	wantAlloc(t, "next", a.Allocate, "10.1.2.2")
	for range 253 {
		if _, err := a.Allocate(); err != nil {
			t.Fatal(err)
		}
	}
	wantAlloc(t, "sub-pool full", a.Allocate, "exhausted")
	wantAlloc(t, "sub-pool full (serial)", a.AllocateSerial, "exhausted")
	wantErr(t, "pool still has room", a.AllocateSpecific(ip("10.1.3.0")), "ok")
	if a.Count() != 258 || a.NumRanges() != 2 { // 10.1.2.0-10.1.3.0 coalesced, 10.1.5.5
		t.Fatalf("%v", a)
	}

	// Sub-pools touching the pool's reserved addresses lose them.
	b := mustNew(t, "10.1.0.0/16", "10.1.0.0/24")
	wantAlloc(t, "start", b.Allocate, "10.1.0.1")
	c := mustNew(t, "10.1.0.0/16", "10.1.255.252/30")
	wantAlloc(t, "1", c.Allocate, "10.1.255.252")
	wantAlloc(t, "2", c.Allocate, "10.1.255.253")
	wantAlloc(t, "3", c.Allocate, "10.1.255.254")
	wantAlloc(t, "broadcast excluded", c.Allocate, "exhausted")
	d := mustNew(t, "10.1.0.0/16", "10.1.255.255/32")
	wantAlloc(t, "only the broadcast", d.Allocate, "exhausted")
	if d.Free().Sign() != 0 {
		t.Error("Free of an all-reserved sub-pool")
	}
	e := mustNew(t, "fd00::/64", "fd00::/128")
	wantAlloc(t, "only the anycast", e.Allocate, "exhausted")
	f := mustNew(t, "fd00::/64", "fd00::100/120")
	wantAlloc(t, "v6 sub", f.Allocate, "fd00::100")
	wantAlloc(t, "v6 sub serial", f.AllocateSerial, "fd00::101")
	if f.SubPool() != pfx("fd00::100/120") {
		t.Error("SubPool")
	}
}

func TestSerial(t *testing.T) {
	a := mustNew(t, "10.0.0.0/29", "") // .1-.6 usable
	for _, want := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		wantAlloc(t, "serial", a.AllocateSerial, want)
	}
	a.Release(ip("10.0.0.1"))
	a.Release(ip("10.0.0.2"))
	for _, want := range []string{"10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.1", "10.0.0.2", "exhausted"} {
		wantAlloc(t, "serial wraps", a.AllocateSerial, want)
	}
	a.Release(ip("10.0.0.5"))
	a.Release(ip("10.0.0.3"))
	wantAlloc(t, "serial after exhaustion resumes after the last one handed out", a.AllocateSerial, "10.0.0.3")

	// Specific allocations don't move the cursor; Allocate does (docker's
	// bitmap updates its cursor on every dynamic allocation).
	b := mustNew(t, "10.0.0.0/24", "")
	wantAlloc(t, "serial", b.AllocateSerial, "10.0.0.1")
	wantErr(t, "specific", b.AllocateSpecific(ip("10.0.0.100")), "ok")
	wantAlloc(t, "serial ignores specific", b.AllocateSerial, "10.0.0.2")
	b.Release(ip("10.0.0.1"))
	wantAlloc(t, "first-free", b.Allocate, "10.0.0.1")
	wantAlloc(t, "serial continues after the first-free one", b.AllocateSerial, "10.0.0.3")
	wantErr(t, "specific", b.AllocateSpecific(ip("10.0.0.4")), "ok")
	wantAlloc(t, "serial skips taken", b.AllocateSerial, "10.0.0.5")

	// Wrap inside a sub-pool.
	c := mustNew(t, "10.0.0.0/24", "10.0.0.8/30")
	for _, want := range []string{"10.0.0.8", "10.0.0.9", "10.0.0.10", "10.0.0.11", "exhausted"} {
		wantAlloc(t, "sub serial", c.AllocateSerial, want)
	}
	c.Release(ip("10.0.0.9"))
	wantAlloc(t, "sub serial wraps", c.AllocateSerial, "10.0.0.9")
}

func TestRestore(t *testing.T) {
	addrs := []netip.Addr{ip("10.0.0.9"), ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.3"), ip("10.0.0.5"), ip("10.0.0.200")}
	a, err := Restore(pfx("10.0.0.0/24"), netip.Prefix{}, addrs)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Collect(a.Ranges()); !slices.Equal(got, []Range{
		{ip("10.0.0.3"), ip("10.0.0.5")}, {ip("10.0.0.9"), ip("10.0.0.9")}, {ip("10.0.0.200"), ip("10.0.0.200")},
	}) {
		t.Fatalf("Ranges = %v", got)
	}
	if a.Count() != 5 || a.Free().Int64() != 254-5 {
		t.Fatalf("%v free %v", a, a.Free())
	}
	if err := checkCoalesced(&a.set); err != nil {
		t.Fatal(err)
	}
	wantAlloc(t, "first free", a.Allocate, "10.0.0.1")
	_, err = Restore(pfx("10.0.0.0/24"), netip.Prefix{}, []netip.Addr{ip("10.0.0.1"), ip("10.0.1.1")})
	wantErr(t, "restore out of range", err, "outofrange")
	_, err = Restore(pfx("10.0.0.0/24"), netip.Prefix{}, []netip.Addr{ip("10.0.0.255")})
	wantErr(t, "restore reserved", err, "reserved")
	_, err = Restore(pfx("10.0.0.0/24"), pfx("10.0.1.0/24"), nil)
	wantErr(t, "restore bad sub", err, "outofrange")
}

func TestSnapshot(t *testing.T) {
	a := mustNew(t, "fd00::/64", "fd00::/112")
	for range 10 {
		a.AllocateSerial()
	}
	a.Release(ip("fd00::3"))
	a.AllocateSpecific(ip("fd00::1:0:5"))
	s := a.Snapshot()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var s2 Snapshot
	if err := json.Unmarshal(data, &s2); err != nil {
		t.Fatal(err)
	}
	b, err := FromSnapshot(s2)
	if err != nil {
		t.Fatalf("FromSnapshot(%s): %v", data, err)
	}
	if !slices.Equal(allAddrs(a), allAddrs(b)) || a.Count() != b.Count() || a.Free().Cmp(b.Free()) != 0 || b.SubPool() != a.SubPool() {
		t.Fatalf("restored %v, want %v", b, a)
	}
	wantAlloc(t, "serial cursor survives", b.AllocateSerial, "fd00::b")
	wantAlloc(t, "first-free", b.Allocate, "fd00::3")

	// Empty snapshot and a pool-wide sub-pool.
	e, err := FromSnapshot(mustNew(t, "10.0.0.0/24", "").Snapshot())
	if err != nil || e.Count() != 0 || e.NumRanges() != 0 {
		t.Fatalf("empty: %v %v", e, err)
	}

	for name, c := range map[string]struct {
		s    Snapshot
		kind string
	}{
		"reversed":       {Snapshot{Pool: pfx("10.0.0.0/24"), Ranges: []Range{{ip("10.0.0.5"), ip("10.0.0.4")}}}, "outofrange"},
		"outside":        {Snapshot{Pool: pfx("10.0.0.0/24"), Ranges: []Range{{ip("10.0.0.5"), ip("10.0.1.4")}}}, "outofrange"},
		"reserved first": {Snapshot{Pool: pfx("10.0.0.0/24"), Ranges: []Range{{ip("10.0.0.0"), ip("10.0.0.4")}}}, "reserved"},
		"reserved last":  {Snapshot{Pool: pfx("10.0.0.0/24"), Ranges: []Range{{ip("10.0.0.9"), ip("10.0.0.255")}}}, "reserved"},
		"bad cursor":     {Snapshot{Pool: pfx("10.0.0.0/24"), Next: ip("10.0.1.0")}, "outofrange"},
		"no pool":        {Snapshot{}, "invalid"},
		"overlapping ok": {Snapshot{Pool: pfx("10.0.0.0/24"), Ranges: []Range{{ip("10.0.0.5"), ip("10.0.0.9")}, {ip("10.0.0.1"), ip("10.0.0.6")}, {ip("10.0.0.10"), ip("10.0.0.10")}}}, "ok"},
	} {
		r, err := FromSnapshot(c.s)
		wantErr(t, name, err, c.kind)
		if err == nil && c.s.Pool.IsValid() && len(c.s.Ranges) > 0 {
			if r.NumRanges() != 1 || r.Count() != 10 {
				t.Errorf("%s: ranges not merged: %v", name, r)
			}
		}
	}
}

func TestIteration(t *testing.T) {
	a := mustNew(t, "10.0.0.0/24", "")
	for _, s := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.7", "10.0.0.254"} {
		a.AllocateSpecific(ip(s))
	}
	var got []netip.Addr
	for x := range a.All() {
		got = append(got, x)
		if len(got) == 4 {
			break
		}
	}
	if !slices.Equal(got, []netip.Addr{ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.7")}) {
		t.Fatalf("All with break = %v", got)
	}
	for r := range a.Ranges() {
		if r != (Range{ip("10.0.0.1"), ip("10.0.0.3")}) {
			t.Fatalf("first range %v", r)
		}
		break
	}
	if s := a.String(); !strings.Contains(s, "5 allocated in 3 ranges") {
		t.Errorf("String() = %q", s)
	}
}

// TestMillionV4 is the memory claim: a million addresses of a /8 are one
// range, releasing every other one leaves half a million ranges, releasing
// the rest leaves an empty tree. No timing is asserted.
func TestMillionV4(t *testing.T) {
	const n = 1_000_000
	a := mustNew(t, "10.0.0.0/8", "")
	for i := range n {
		x, err := a.Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if i == n-1 && x != ip("10.15.66.64") {
			t.Fatalf("millionth address %v", x)
		}
	}
	if a.NumRanges() != 1 || a.Count() != n {
		t.Fatalf("after %d allocations: %v", n, a)
	}
	first := fromAddr(ip("10.0.0.1"))
	for i := uint64(0); i < n; i += 2 {
		if err := a.Release(toAddr(u128{0, first.lo + i}, true)); err != nil {
			t.Fatal(err)
		}
	}
	if a.NumRanges() != n/2 || a.Count() != n/2 {
		t.Fatalf("after releasing every other one: %v", a)
	}
	if err := checkCoalesced(&a.set); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i < n; i += 2 {
		if err := a.Release(toAddr(u128{0, first.lo + i}, true)); err != nil {
			t.Fatal(err)
		}
	}
	if a.NumRanges() != 0 || a.Count() != 0 || a.set.root != nil {
		t.Fatalf("after releasing all: %v", a)
	}
}

func TestMillionV6(t *testing.T) {
	const n = 1_000_000
	a := mustNew(t, "2001:db8:1:2::/64", "")
	var last netip.Addr
	for range n {
		x, err := a.AllocateSerial()
		if err != nil {
			t.Fatal(err)
		}
		last = x
	}
	if a.NumRanges() != 1 || a.Count() != n || last != ip("2001:db8:1:2::f:4240") {
		t.Fatalf("%v last %v", a, last)
	}
	for x := ip("2001:db8:1:2::1"); x.Compare(last) <= 0; x = x.Next() {
		a.Release(x)
	}
	if a.NumRanges() != 0 || a.Count() != 0 || a.set.root != nil {
		t.Fatalf("after releasing all: %v", a)
	}
}
