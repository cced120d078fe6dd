package alloc

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// Each benchmark iteration is a whole workload (e.g. a million allocations
// and their releases); ns/addr reports the cost of one operation.
func reportPerOp(b *testing.B, iters, opsPerIter int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iters*opsPerIter), "ns/addr-op")
}

func benchAllocRelease1M(b *testing.B, pool string) {
	const n = 1_000_000
	b.ReportAllocs()
	addrs := make([]netip.Addr, n)
	iters := 0
	for b.Loop() {
		iters++
		a, err := New(pfx(pool), netip.Prefix{})
		if err != nil {
			b.Fatal(err)
		}
		for i := range addrs {
			if addrs[i], err = a.Allocate(); err != nil {
				b.Fatal(err)
			}
		}
		if a.NumRanges() != 1 {
			b.Fatalf("%v", a)
		}
		for _, x := range addrs {
			a.Release(x)
		}
		if a.NumRanges() != 0 {
			b.Fatalf("%v", a)
		}
	}
	reportPerOp(b, iters, 2*n)
}

func BenchmarkAllocate1M_v4_slash8(b *testing.B) { benchAllocRelease1M(b, "10.0.0.0/8") }

func BenchmarkAllocate1M_v6_slash64(b *testing.B) { benchAllocRelease1M(b, "2001:db8:0:1::/64") }

// BenchmarkSpecificRandom100k_v4 allocates 100k distinct random addresses of
// 10.0.0.0/8 (about 100k isolated ranges: a B-tree of 3 levels), then
// releases them in another random order.
func BenchmarkSpecificRandom100k_v4(b *testing.B) {
	const n = 100_000
	b.ReportAllocs()
	r := rand.New(rand.NewPCG(1, 1))
	seen := make(map[uint32]bool, n)
	addrs := make([]netip.Addr, 0, n)
	for len(addrs) < n {
		v := 10<<24 | r.Uint32N(1<<24-2) + 1 // not .0.0.0 / .255.255.255
		if !seen[v] {
			seen[v] = true
			addrs = append(addrs, netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}))
		}
	}
	release := append([]netip.Addr(nil), addrs...)
	r.Shuffle(len(release), func(i, j int) { release[i], release[j] = release[j], release[i] })
	iters := 0
	for b.Loop() {
		iters++
		a, _ := New(pfx("10.0.0.0/8"), netip.Prefix{})
		for _, x := range addrs {
			if err := a.AllocateSpecific(x); err != nil {
				b.Fatal(err)
			}
		}
		for _, x := range release {
			a.Release(x)
		}
		if a.NumRanges() != 0 {
			b.Fatalf("%v", a)
		}
	}
	reportPerOp(b, iters, 2*n)
}

// BenchmarkPools1000_slash24 allocates 1000 /24s from docker's global
// default pool around explicit pools and routes, then releases them.
func BenchmarkPools1000_slash24(b *testing.B) {
	const n = 1000
	b.ReportAllocs()
	routes := []netip.Prefix{pfx("10.0.7.128/25"), pfx("10.2.0.0/16"), pfx("192.168.1.0/24"), pfx("172.17.0.0/16")}
	got := make([]netip.Prefix, n)
	iters := 0
	for b.Loop() {
		iters++
		p, _ := NewPoolAllocator(DockerGlobalDefaultPools())
		for _, r := range []string{"10.0.5.0/26", "10.1.0.0/16", "10.0.200.0/21"} {
			p.Reserve(pfx(r))
		}
		var err error
		for i := range got {
			if got[i], err = p.Allocate(false, routes); err != nil {
				b.Fatal(err)
			}
		}
		for _, x := range got {
			if err := p.Release(x); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPerOp(b, iters, 2*n)
}
