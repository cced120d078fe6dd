package alloc

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustPools(t testing.TB, specs []PoolSpec) *PoolAllocator {
	t.Helper()
	p, err := NewPoolAllocator(specs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func wantPool(t *testing.T, p *PoolAllocator, v6 bool, exclude []netip.Prefix, want string) {
	t.Helper()
	got, err := p.Allocate(v6, exclude)
	if want == "none" {
		wantErr(t, "Allocate", err, "nomoresubnets")
		return
	}
	if err != nil || got != pfx(want) {
		t.Fatalf("Allocate = %v, %v; want %s", got, err, want)
	}
}

func TestDockerDefaultPools(t *testing.T) {
	p := mustPools(t, DockerDefaultPools())
	var want []string
	for i := 17; i <= 31; i++ {
		want = append(want, fmt.Sprintf("172.%d.0.0/16", i))
	}
	for i := 0; i < 256; i += 16 {
		want = append(want, fmt.Sprintf("192.168.%d.0/20", i))
	}
	if len(want) != 31 {
		t.Fatal(len(want))
	}
	for _, w := range want {
		wantPool(t, p, false, nil, w)
	}
	wantPool(t, p, false, nil, "none")
	wantPool(t, p, true, nil, "none") // no IPv6 defaults configured
	if p.Len() != 31 {
		t.Fatalf("Len = %d", p.Len())
	}
	// Releasing one makes it the next one handed out again.
	if err := p.Release(pfx("172.25.0.0/16")); err != nil {
		t.Fatal(err)
	}
	wantPool(t, p, false, nil, "172.25.0.0/16")

	g := DockerGlobalDefaultPools()
	if len(g) != 1 || g[0] != (PoolSpec{pfx("10.0.0.0/8"), 24}) {
		t.Fatalf("global defaults %v", g)
	}
}

// A subnet size overrides the default pools' own sizes, as dockerd does
// for --subnet 0.0.0.0/N; pools too small for it are skipped.
func TestPoolAllocateSize(t *testing.T) {
	ula := DeriveULAPool("h")
	ula56 := netip.PrefixFrom(ula.Base.Addr(), 56)
	p := mustPools(t, append(DockerDefaultPools(), ula))
	for _, c := range []struct {
		v6   bool
		size int
		ex   []netip.Prefix
		want string
	}{
		{false, 24, nil, "172.17.0.0/24"},
		{false, 24, nil, "172.17.1.0/24"},
		{false, 0, nil, "172.18.0.0/16"}, // 172.17/16 is partly used
		{false, 16, []netip.Prefix{pfx("172.19.0.0/16")}, "172.20.0.0/16"},
		{false, 14, nil, "172.24.0.0/14"}, // 172.20/14 is partly used; the /16 bases are too small
		{false, 30, nil, "172.17.2.0/30"},
		{false, 32, nil, "172.17.2.4/32"},
		{true, 56, nil, ula56.String()},
		{true, 0, nil, netip.PrefixFrom(lastAddr(ula56).Next(), 64).String()}, // after the /56
	} {
		got, err := p.AllocateSize(c.v6, c.size, c.ex)
		if err != nil || got.String() != c.want {
			t.Fatalf("AllocateSize(%v, %d, %v) = %v, %v; want %s", c.v6, c.size, c.ex, got, err, c.want)
		}
	}
	// Sizes no default pool can hold, or out of range.
	for _, c := range []struct {
		v6   bool
		size int
	}{{false, 12}, {false, 33}, {false, -1}, {true, 47}, {true, 129}} {
		_, err := p.AllocateSize(c.v6, c.size, nil)
		wantErr(t, fmt.Sprintf("AllocateSize(%v, %d)", c.v6, c.size), err, "invalid")
	}
	// A size that fits, in pools that are used up.
	_, err := mustPools(t, []PoolSpec{{pfx("10.0.0.0/24"), 24}}).AllocateSize(false, 25, []netip.Prefix{pfx("10.0.0.0/24")})
	wantErr(t, "AllocateSize in an excluded pool", err, "nomoresubnets")
}

func TestPoolExcludeAndReserve(t *testing.T) {
	p := mustPools(t, DockerDefaultPools())
	routes := []netip.Prefix{pfx("172.17.0.0/16"), pfx("172.18.5.0/24"), pfx("fd00::/8"), pfx("0.0.0.0/0").Masked()}
	// A default route covers everything: docker only passes the routes
	// that matter, so exclude it here by using the first three.
	wantPool(t, p, false, routes[:3], "172.19.0.0/16")
	wantPool(t, p, false, routes, "none")
	if err := p.Reserve(pfx("172.20.0.0/15")); err != nil { // explicit pool covering two candidates
		t.Fatal(err)
	}
	if err := p.Reserve(pfx("172.22.7.0/24")); err != nil { // smaller than a candidate
		t.Fatal(err)
	}
	wantPool(t, p, false, nil, "172.17.0.0/16") // routes change between calls
	// 172.18/16 overlaps the 172.18.5.0/24 route, 172.20-21 the explicit /15,
	// 172.22 the explicit /24.
	wantPool(t, p, false, routes[:3], "172.23.0.0/16")
	wantPool(t, p, false, nil, "172.18.0.0/16")

	err := p.Reserve(pfx("172.16.0.0/12"))
	wantErr(t, "Reserve overlapping", err, "overlap")
	if !strings.Contains(err.Error(), "172.17.0.0/16") {
		t.Errorf("overlap error %q should name the lowest overlapping pool", err)
	}
	for _, c := range []struct{ q, want string }{
		{"172.16.0.0/12", "172.17.0.0/16"},
		{"172.21.3.0/24", "172.20.0.0/15"},
		{"172.22.0.0/16", "172.22.7.0/24"},
		{"172.22.7.128/25", "172.22.7.0/24"},
		{"172.22.8.0/24", ""},
		{"10.0.0.0/8", ""},
		{"::/0", ""},
	} {
		got, ok := p.Overlaps(pfx(c.q))
		if ok != (c.want != "") || ok && got != pfx(c.want) {
			t.Errorf("Overlaps(%s) = %v %v, want %q", c.q, got, ok, c.want)
		}
	}
	if _, ok := p.Overlaps(netip.Prefix{}); ok {
		t.Error("Overlaps(invalid)")
	}

	wantErr(t, "Release sub-prefix", p.Release(pfx("172.20.0.0/16")), "unknownpool")
	wantErr(t, "Release unknown", p.Release(pfx("10.0.0.0/24")), "unknownpool")
	wantErr(t, "Release invalid", p.Release(netip.Prefix{}), "unknownpool")
	wantErr(t, "Release masked", p.Release(pfx("172.20.9.9/15")), "ok")
	wantErr(t, "Release twice", p.Release(pfx("172.20.0.0/15")), "unknownpool")
	wantPool(t, p, false, nil, "172.20.0.0/16")
	wantErr(t, "Reserve invalid", p.Reserve(netip.Prefix{}), "invalid")

	got := slices.Collect(p.Pools())
	want := []netip.Prefix{pfx("172.17.0.0/16"), pfx("172.18.0.0/16"), pfx("172.19.0.0/16"), pfx("172.20.0.0/16"), pfx("172.22.7.0/24"), pfx("172.23.0.0/16")}
	if !slices.Equal(got, want) {
		t.Fatalf("Pools = %v\nwant %v", got, want)
	}
	for x := range p.Pools() {
		if x != want[0] {
			t.Fatal("early stop")
		}
		break
	}
}

func TestPoolSpecsValidationAndOrder(t *testing.T) {
	for _, bad := range [][]PoolSpec{
		{{netip.Prefix{}, 24}},
		{{pfx("10.0.0.0/16"), 8}},
		{{pfx("10.0.0.0/16"), 33}},
		{{pfx("fd00::/48"), 129}},
		{{pfx("::ffff:10.0.0.0/104"), 120}}, // IPv4-mapped: would be handed out as IPv6
	} {
		_, err := NewPoolAllocator(bad)
		wantErr(t, fmt.Sprint(bad), err, "invalid")
	}
	// A family without default pools says so.
	_, err := mustPools(t, []PoolSpec{{pfx("fd00::/48"), 64}}).Allocate(false, nil)
	if wantErr(t, "IPv4 without IPv4 pools", err, "nomoresubnets"); !strings.Contains(err.Error(), "no IPv4 default pools") {
		t.Errorf("error %q", err)
	}
	// Sorted by address; the later, overlapping 10.1.0.0/16 is dropped like dockerd does.
	p := mustPools(t, []PoolSpec{
		{pfx("10.1.0.0/16"), 28},
		{pfx("192.168.0.0/23"), 24},
		{pfx("10.0.0.0/15"), 16},
		{pfx("fd00:1::/127"), 128},
		{pfx("fd00::/126"), 127},
	})
	for _, w := range []string{"10.0.0.0/16", "10.1.0.0/16", "192.168.0.0/24", "192.168.1.0/24", "none"} {
		wantPool(t, p, false, nil, w)
	}
	for _, w := range []string{"fd00::/127", "fd00::2/127", "fd00:1::/128", "fd00:1::1/128", "none"} {
		wantPool(t, p, true, nil, w)
	}
	// The dropped pool would have offered 10.1.0.16/28 once a route blocks 10.1.0.0/16.
	q := mustPools(t, []PoolSpec{{pfx("10.1.0.0/16"), 28}, {pfx("10.0.0.0/15"), 16}})
	wantPool(t, q, false, nil, "10.0.0.0/16")
	wantPool(t, q, false, []netip.Prefix{pfx("10.1.0.0/28")}, "none")
}

func TestPoolEdges(t *testing.T) {
	// Size equal to the base, /32 and /128 subnets, /0 bases, the top of the space.
	p := mustPools(t, []PoolSpec{
		{pfx("255.255.255.252/30"), 32},
		{pfx("::/0"), 0},
	})
	for _, w := range []string{"255.255.255.252/32", "255.255.255.254/32", "none"} {
		wantPool(t, p, false, []netip.Prefix{pfx("255.255.255.253/32"), pfx("255.255.255.255/32")}, w)
	}
	wantPool(t, p, true, []netip.Prefix{pfx("10.0.0.0/8")}, "::/0") // other family ignored
	wantPool(t, p, true, nil, "none")
	wantErr(t, "release /0", p.Release(pfx("::/0")), "ok")
	wantPool(t, p, true, []netip.Prefix{pfx("ffff::/128")}, "none")

	q := mustPools(t, []PoolSpec{{pfx("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"), 126}})
	wantErr(t, "reserve", q.Reserve(pfx("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126")), "ok")
	for _, w := range []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/126", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff4/126", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff8/126", "none"} {
		wantPool(t, q, true, nil, w)
	}
}

func TestDeriveULAPool(t *testing.T) {
	for _, id := range []string{"", "host-1", "d9b4c7a2-0f1e-4c51-9a7b-2e8f5d6c1b3a"} {
		got := DeriveULAPool(id)
		// Reference: fd00:: + (40 low bits of the first 8 sha256 bytes) << 80.
		sum := sha256.Sum256([]byte(id))
		gid := new(big.Int).SetUint64(binary.BigEndian.Uint64(sum[:8]) & (1<<40 - 1))
		v := new(big.Int).SetBytes(netip.MustParseAddr("fd00::").AsSlice())
		v.Add(v, gid.Lsh(gid, 80))
		var b [16]byte
		v.FillBytes(b[:])
		want := PoolSpec{netip.PrefixFrom(netip.AddrFrom16(b), 48), 64}
		if got != want || got.Base.Masked() != got.Base || got.Base.Addr().As16()[0] != 0xfd {
			t.Errorf("DeriveULAPool(%q) = %v, want %v", id, got, want)
		}
		if DeriveULAPool(id) != got {
			t.Error("not stable")
		}
		p := mustPools(t, []PoolSpec{got})
		first, _ := p.Allocate(true, nil)
		second, _ := p.Allocate(true, nil)
		if first != netip.PrefixFrom(want.Base.Addr(), 64) || second.Addr().As16()[7] != 1 || second.Bits() != 64 {
			t.Errorf("ULA subnets %v %v", first, second)
		}
	}
	if DeriveULAPool("a") == DeriveULAPool("b") {
		t.Error("different hosts, same ULA")
	}
}

// TestPoolsThousand: 1000 /24s packed in 10.0.0.0/8 around explicit pools
// and routes, then released; the coalesced set must be back to empty.
func TestPoolsThousand(t *testing.T) {
	p := mustPools(t, DockerGlobalDefaultPools())
	for _, r := range []string{"10.0.5.0/26", "10.1.0.0/16", "10.0.200.0/21"} {
		if err := p.Reserve(pfx(r)); err != nil {
			t.Fatal(err)
		}
	}
	routes := []netip.Prefix{pfx("10.0.7.128/25"), pfx("10.2.0.0/16"), pfx("192.168.0.0/16")}
	var got []netip.Prefix
	for range 1000 {
		x, err := p.Allocate(false, routes)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, x)
	}
	// 10.0.0-255 minus 5, 7, 200-207 = 246 subnets; 10.1/16 and 10.2/16 skipped.
	if got[4] != pfx("10.0.4.0/24") || got[5] != pfx("10.0.6.0/24") || got[6] != pfx("10.0.8.0/24") ||
		got[245] != pfx("10.0.255.0/24") || got[246] != pfx("10.3.0.0/24") || got[999] != pfx("10.5.241.0/24") {
		t.Fatalf("unexpected sequence: %v %v %v %v %v %v", got[4], got[5], got[6], got[245], got[246], got[999])
	}
	f := &p.fams[0]
	if len(f.pools) != 1003 || f.used.len() > 10 {
		t.Fatalf("pools %d, coalesced runs %d", len(f.pools), f.used.len())
	}
	for _, x := range got {
		if err := p.Release(x); err != nil {
			t.Fatal(err)
		}
	}
	if p.Len() != 3 || f.used.len() != 3 {
		t.Fatalf("after release: %d pools, %d runs", p.Len(), f.used.len())
	}
	if err := checkCoalesced(&f.used); err != nil {
		t.Fatal(err)
	}
}

// poolModel is a brute-force reference for PoolAllocator: it enumerates
// every candidate subnet and tests it against every pool and exclusion.
type poolModel struct {
	defaults []PoolSpec // already in dockerd's order
	pools    []netip.Prefix
}

func (m *poolModel) overlapsLowest(q netip.Prefix) (netip.Prefix, bool) {
	var best netip.Prefix
	for _, x := range m.pools {
		if x.Overlaps(q) && (!best.IsValid() || x.Addr().Less(best.Addr())) {
			best = x
		}
	}
	return best, best.IsValid()
}

func (m *poolModel) allocate(v6 bool, size int, exclude []netip.Prefix) (netip.Prefix, string) {
	eligible := false
	for _, d := range m.defaults {
		if d.Base.Addr().Is6() != v6 {
			continue
		}
		if size != 0 {
			if size < d.Base.Bits() {
				continue
			}
			d.Size = size
		}
		eligible = true
		blockers := slices.Concat(m.pools, exclude)
	next:
		for c := netip.PrefixFrom(d.Base.Addr(), d.Size); c.IsValid() && d.Base.Contains(c.Addr()); c = netip.PrefixFrom(lastAddr(c).Next(), d.Size) {
			for _, x := range blockers {
				if x.Overlaps(c) {
					continue next
				}
			}
			m.pools = append(m.pools, c)
			return c, "ok"
		}
	}
	if !eligible && size != 0 {
		return netip.Prefix{}, "invalid"
	}
	return netip.Prefix{}, "nomoresubnets"
}

func (m *poolModel) reserve(q netip.Prefix) string {
	if _, ok := m.overlapsLowest(q); ok {
		return "overlap"
	}
	m.pools = append(m.pools, q.Masked())
	return "ok"
}

func (m *poolModel) release(q netip.Prefix) string {
	q = q.Masked()
	if i := slices.Index(m.pools, q); i >= 0 {
		m.pools = slices.Delete(m.pools, i, i+1)
		return "ok"
	}
	return "unknownpool"
}

var fuzzPoolSpecs = []PoolSpec{
	{pfx("10.0.0.0/16"), 24},
	{pfx("10.0.128.0/17"), 28}, // inside the first: dropped (it would offer /28s where the /24s are blocked)
	{pfx("10.2.0.0/22"), 26},
	{pfx("10.3.0.0/24"), 24},
	{pfx("255.255.255.0/24"), 28},
	{pfx("fd00::/112"), 120},
	{pfx("fd00:1::/120"), 124},
	{pfx("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120"), 126},
}

var fuzzPoolModelDefaults = []PoolSpec{ // dockerd's order for fuzzPoolSpecs, by hand
	fuzzPoolSpecs[0], fuzzPoolSpecs[2], fuzzPoolSpecs[3], fuzzPoolSpecs[4],
	fuzzPoolSpecs[5], fuzzPoolSpecs[6], fuzzPoolSpecs[7],
}

// randPrefix derives a prefix around the default pools from two bytes.
func randPrefix(a, b byte) netip.Prefix {
	bases := []netip.Prefix{pfx("10.0.0.0/14"), pfx("255.255.255.0/24"), pfx("fd00::/111"), pfx("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120")}
	base := bases[int(a)%len(bases)]
	hostBits := base.Addr().BitLen() - base.Bits()
	bits := base.Bits() + int(b)%(hostBits+3) - 1 // sometimes one bit shorter than the base
	bits = min(max(bits, 0), base.Addr().BitLen())
	x := fromAddr(base.Addr())
	off := uint64(a)<<8 | uint64(b)
	off *= 0x9e3779b97f4a7c15 // spread the offset over the host bits
	x, _ = x.add(u128{0, off & lowMask(min(hostBits, 64)).lo})
	return netip.PrefixFrom(toAddr(x, base.Addr().Is4()), bits).Masked()
}

func runPoolOps(t *testing.T, ops []byte) {
	t.Helper()
	p := mustPools(t, fuzzPoolSpecs)
	m := &poolModel{defaults: fuzzPoolModelDefaults}
	for i := 0; i+3 < len(ops); i += 4 {
		op, a, b, c := ops[i], ops[i+1], ops[i+2], ops[i+3]
		var what, got, want string
		switch op % 8 {
		case 0, 1, 2:
			v6 := op%8 == 2
			var ex []netip.Prefix
			for j := range int(c % 4) {
				ex = append(ex, randPrefix(a+byte(j), b^byte(j*77)))
			}
			// Half the time a subnet size, as --subnet 0.0.0.0/N asks
			// (sizes around those of the default pools).
			size := 0
			if c&4 != 0 {
				size = 14 + int(c>>3)%19 // 14..32
				if v6 {
					size = 108 + int(c>>3)%21 // 108..128
				}
			}
			x, err := p.AllocateSize(v6, size, ex)
			mx, mk := m.allocate(v6, size, ex)
			what, got, want = fmt.Sprintf("AllocateSize(%v, %d, %v)", v6, size, ex), fmt.Sprint(x, errKind(err)), fmt.Sprint(mx, mk)
		case 3, 4:
			q := randPrefix(a, b)
			what, got, want = "Reserve "+q.String(), errKind(p.Reserve(q)), m.reserve(q)
		case 5, 6:
			q := randPrefix(a, b)
			if len(m.pools) > 0 && c%2 == 0 {
				q = m.pools[int(a)%len(m.pools)]
			}
			what, got, want = "Release "+q.String(), errKind(p.Release(q)), m.release(q)
		case 7:
			q := randPrefix(a, b)
			x, ok := p.Overlaps(q)
			mx, mok := m.overlapsLowest(q)
			what, got, want = "Overlaps "+q.String(), fmt.Sprint(x, ok), fmt.Sprint(mx, mok)
		}
		if got != want {
			t.Fatalf("step %d: %s = %s, want %s", i/4, what, got, want)
		}
		gotPools := slices.Collect(p.Pools())
		wantPools := slices.Clone(m.pools)
		slices.SortFunc(wantPools, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
		if !slices.Equal(gotPools, wantPools) || p.Len() != len(wantPools) {
			t.Fatalf("step %d after %s: pools\n got %v\nwant %v", i/4, what, gotPools, wantPools)
		}
		for _, f := range p.fams {
			if err := checkPoolMap(&f); err != nil {
				t.Fatal(err)
			}
			if err := checkCoalesced(&f.used); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestPropertyPools(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 6 {
		ops := make([]byte, 4*1500)
		for j := range ops {
			ops[j] = byte(r.Uint32())
		}
		runPoolOps(t, ops)
	}
}

// FuzzPoolAllocator: (op, a, b, c) quadruples against the brute-force model.
func FuzzPoolAllocator(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 3, 0, 20, 0, 7, 0, 9, 0, 5, 0, 0, 0})
	f.Add([]byte{3, 0, 6, 0, 0, 1, 2, 3, 2, 2, 0, 0, 6, 1, 1, 1, 4, 3, 118, 0, 2, 0, 0, 0})
	f.Add([]byte{1, 5, 5, 3, 1, 5, 5, 3, 1, 5, 5, 3, 5, 0, 0, 0, 1, 5, 5, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4*1000 {
			return
		}
		runPoolOps(t, data)
	})
}

// checkPoolMap checks that the coalesced tree is exactly the union of the
// exact pools kept in the map.
func checkPoolMap(f *poolFamily) error {
	los := slices.SortedFunc(maps.Keys(f.pools), u128.cmp)
	var want []span
	for _, lo := range los {
		want = appendCoalesced(want, span{lo, f.pools[lo]})
	}
	var got []span
	f.used.ascend(func(s span) bool { got = append(got, s); return true })
	if !slices.Equal(got, want) {
		return fmt.Errorf("coalesced pools %v, want %v", got, want)
	}
	return nil
}
