package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/libnetwork/ipamapi"
	"github.com/docker/docker/libnetwork/ipams/defaultipam"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/alloc"
)

// addrAPI is the little both allocators have in common, for comparing
// their answers.
type addrAPI interface {
	allocate(serial bool) (netip.Addr, error)
	specific(addr netip.Addr) error
	release(addr netip.Addr) error
}

type dockplugAddrs struct{ a *alloc.Allocator }

func (d dockplugAddrs) allocate(serial bool) (netip.Addr, error) {
	if serial {
		return d.a.AllocateSerial()
	}
	return d.a.Allocate()
}
func (d dockplugAddrs) specific(addr netip.Addr) error { return d.a.AllocateSpecific(addr) }
func (d dockplugAddrs) release(addr netip.Addr) error  { return d.a.Release(addr) }

type dockerAddrs struct {
	d  *defaultipam.Allocator
	id string
}

func (d dockerAddrs) allocate(serial bool) (netip.Addr, error) {
	var opts map[string]string
	if serial {
		opts = map[string]string{ipamapi.AllocSerialPrefix: "true"}
	}
	n, _, err := d.d.RequestAddress(d.id, nil, opts)
	if err != nil {
		return netip.Addr{}, err
	}
	a, _ := netip.AddrFromSlice(n.IP)
	return a.Unmap(), nil
}

func (d dockerAddrs) specific(addr netip.Addr) error {
	_, _, err := d.d.RequestAddress(d.id, net.IP(addr.AsSlice()), nil)
	return err
}

func (d dockerAddrs) release(addr netip.Addr) error {
	return d.d.ReleaseAddress(d.id, net.IP(addr.AsSlice()))
}

// both returns the two allocators for pool (and sub-pool, may be zero).
func both(t *testing.T, pool, sub netip.Prefix) (dp, dk addrAPI) {
	t.Helper()
	a, err := alloc.New(pool, sub)
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDocker(nil)
	if err != nil {
		t.Fatal(err)
	}
	req := ipamapi.PoolRequest{AddressSpace: dockerSpace, Pool: pool.String(), V6: pool.Addr().Is6()}
	if sub.IsValid() {
		req.SubPool = sub.String()
	}
	p, err := d.RequestPool(req)
	if err != nil {
		t.Fatal(err)
	}
	return dockplugAddrs{a}, dockerAddrs{d, p.PoolID}
}

// same runs op on both and fails unless they agree on the address and on
// success; it returns the address.
func same(t *testing.T, what string, dp, dk addrAPI, op func(addrAPI) (netip.Addr, error)) netip.Addr {
	t.Helper()
	a1, err1 := op(dp)
	a2, err2 := op(dk)
	if a1 != a2 || (err1 == nil) != (err2 == nil) {
		t.Fatalf("%s: dockplug %v %v, docker %v %v", what, a1, err1, a2, err2)
	}
	return a1
}

func alloc1(serial bool) func(addrAPI) (netip.Addr, error) {
	return func(x addrAPI) (netip.Addr, error) { return x.allocate(serial) }
}

func spec(addr string) func(addrAPI) (netip.Addr, error) {
	a := netip.MustParseAddr(addr)
	return func(x addrAPI) (netip.Addr, error) { return netip.Addr{}, x.specific(a) }
}

func rel(addr string) func(addrAPI) (netip.Addr, error) {
	a := netip.MustParseAddr(addr)
	return func(x addrAPI) (netip.Addr, error) { return netip.Addr{}, x.release(a) }
}

// TestSameResults checks that the two allocators hand out the same
// addresses and pools for the operations the benchmark times, so the
// comparison is like for like. Known differences are asserted as such.
func TestSameResults(t *testing.T) {
	t.Run("first-free IPv4 /29 until exhausted", func(t *testing.T) {
		dp, dk := both(t, netip.MustParsePrefix("192.168.1.0/29"), netip.Prefix{})
		for i := 1; i <= 6; i++ {
			if got := same(t, "allocate", dp, dk, alloc1(false)); got != netip.MustParseAddr(fmt.Sprintf("192.168.1.%d", i)) {
				t.Fatalf("allocation %d: %s", i, got)
			}
		}
		same(t, "allocate from a full pool", dp, dk, alloc1(false)) // both fail
		same(t, "release .3", dp, dk, rel("192.168.1.3"))
		if got := same(t, "allocate after release", dp, dk, alloc1(false)); got.String() != "192.168.1.3" {
			t.Fatalf("reallocated %s", got)
		}
		same(t, "release an address never allocated", dp, dk, rel("192.168.1.3")) // ok twice
		same(t, "release outside the pool", dp, dk, rel("192.168.2.1"))           // both fail
	})
	t.Run("specific addresses", func(t *testing.T) {
		dp, dk := both(t, netip.MustParsePrefix("192.168.1.0/24"), netip.Prefix{})
		same(t, "specific .10", dp, dk, spec("192.168.1.10"))
		same(t, "specific .10 again", dp, dk, spec("192.168.1.10"))  // both: in use
		same(t, "specific outside", dp, dk, spec("192.168.2.10"))    // both: out of range
		same(t, "specific network", dp, dk, spec("192.168.1.0"))     // both refuse (see below)
		same(t, "specific broadcast", dp, dk, spec("192.168.1.255")) // both refuse
		if got := same(t, "first free", dp, dk, alloc1(false)); got.String() != "192.168.1.1" {
			t.Fatalf("first free %s", got)
		}
	})
	t.Run("the first random addresses of case 3", func(t *testing.T) {
		dp, dk := both(t, pool4, netip.Prefix{})
		for _, a := range randomAddrs(pool4, 2000) {
			same(t, "specific "+a.String(), dp, dk, func(x addrAPI) (netip.Addr, error) { return netip.Addr{}, x.specific(a) })
		}
		for range 5 {
			same(t, "first free among random", dp, dk, alloc1(false))
		}
	})
	t.Run("serial", func(t *testing.T) {
		dp, dk := both(t, netip.MustParsePrefix("192.168.1.0/24"), netip.Prefix{})
		for range 3 {
			same(t, "serial", dp, dk, alloc1(true))
		}
		same(t, "release .2", dp, dk, rel("192.168.1.2"))
		if got := same(t, "serial after release", dp, dk, alloc1(true)); got.String() != "192.168.1.4" {
			t.Fatalf("serial %s", got)
		}
	})
	t.Run("sub-pool", func(t *testing.T) {
		dp, dk := both(t, netip.MustParsePrefix("172.30.0.0/16"), netip.MustParsePrefix("172.30.5.0/24"))
		// Only the pool's network address is reserved, not the sub-pool's.
		if got := same(t, "first in sub-pool", dp, dk, alloc1(false)); got.String() != "172.30.5.0" {
			t.Fatalf("sub-pool first %s", got)
		}
		same(t, "specific outside the sub-pool", dp, dk, spec("172.30.9.9"))
	})
	t.Run("IPv6 /64", func(t *testing.T) {
		dp, dk := both(t, pool6, netip.Prefix{})
		want := seqAddrs(pool6, 8)
		for i := range want {
			if got := same(t, "allocate", dp, dk, alloc1(false)); got != want[i] {
				t.Fatalf("allocation %d: %s", i, got)
			}
		}
		same(t, "specific last address", dp, dk, spec("fd00:1:2:3:ffff:ffff:ffff:ffff")) // not reserved in IPv6
		same(t, "specific subnet-router anycast", dp, dk, spec("fd00:1:2:3::"))          // reserved by both
	})
	t.Run("small pools", func(t *testing.T) {
		for _, c := range []struct {
			pool string
			n    int // addresses handed out
		}{{"192.168.1.0/30", 2}, {"192.168.1.4/31", 2}, {"192.168.1.9/32", 1}, {"fd00::1/128", 0}, {"fd00::/127", 1}} {
			dp, dk := both(t, netip.MustParsePrefix(c.pool), netip.Prefix{})
			for range c.n {
				same(t, c.pool+" allocate", dp, dk, alloc1(false))
			}
			if _, err := dp.allocate(false); err == nil {
				t.Fatalf("%s: more than %d addresses", c.pool, c.n)
			}
			same(t, c.pool+" exhausted", dp, dk, alloc1(false))
		}
	})
	t.Run("dynamic /24 pools", func(t *testing.T) {
		p, err := newDockplugPools([]alloc.PoolSpec{split4})
		if err != nil {
			t.Fatal(err)
		}
		d, err := newDocker([]alloc.PoolSpec{split4})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[netip.Prefix]string{}
		next := func(what string) netip.Prefix {
			t.Helper()
			got, err := p.request(false)
			if err != nil {
				t.Fatal(err)
			}
			dk, err := d.RequestPool(ipamapi.PoolRequest{AddressSpace: dockerSpace})
			if err != nil {
				t.Fatal(err)
			}
			if got != dk.Pool {
				t.Fatalf("%s: dockplug %s, docker %s", what, got, dk.Pool)
			}
			ids[got] = dk.PoolID
			return got
		}
		for i := range 8 {
			if got := next("pool"); got.String() != fmt.Sprintf("10.0.%d.0/24", i) {
				t.Fatalf("pool %d: %s", i, got)
			}
		}
		for _, pfx := range []string{"10.0.2.0/24", "10.0.5.0/24"} {
			pf := netip.MustParsePrefix(pfx)
			if err := p.release(pf); err != nil {
				t.Fatal(err)
			}
			if err := d.ReleasePool(ids[pf]); err != nil {
				t.Fatal(err)
			}
		}
		for _, want := range []string{"10.0.2.0/24", "10.0.5.0/24", "10.0.8.0/24"} {
			if got := next("pool after releases"); got.String() != want {
				t.Fatalf("got %s, want %s", got, want)
			}
		}
		// Each pool's first address is the same too.
		a := p.pools[netip.MustParsePrefix("10.0.5.0/24")]
		got, _ := a.Allocate()
		n, _, err := d.RequestAddress(ids[netip.MustParsePrefix("10.0.5.0/24")], nil, nil)
		if err != nil || got.String() != n.IP.String() {
			t.Fatalf("first address: dockplug %s, docker %v %v", got, n, err)
		}
	})

	// Known differences, asserted so that a change on either side shows.
	t.Run("difference: releasing a reserved address", func(t *testing.T) {
		// docker keeps the network and broadcast addresses as set bits of
		// its bitmap, so ReleaseAddress of the network address clears that
		// bit and the next first-free allocation hands the network address
		// out. dockplug never stores reserved addresses: the release is a
		// no-op and they stay reserved.
		dp, dk := both(t, netip.MustParsePrefix("192.168.1.0/24"), netip.Prefix{})
		same(t, "release network", dp, dk, rel("192.168.1.0")) // both nil
		a1, _ := dp.allocate(false)
		a2, _ := dk.allocate(false)
		if a1.String() != "192.168.1.1" || a2.String() != "192.168.1.0" {
			t.Fatalf("after releasing the network address: dockplug %s (want .1), docker %s (want .0)", a1, a2)
		}
	})
	t.Run("difference: error for a reserved address", func(t *testing.T) {
		// Both refuse, with different errors: docker says "already in use"
		// (the bit is set), dockplug says reserved.
		dp, dk := both(t, netip.MustParsePrefix("192.168.1.0/24"), netip.Prefix{})
		errDp := dp.specific(netip.MustParseAddr("192.168.1.255"))
		errDk := dk.specific(netip.MustParseAddr("192.168.1.255"))
		if !errors.Is(errDp, alloc.ErrReserved) || !errors.Is(errDk, ipamapi.ErrIPAlreadyAllocated) {
			t.Fatalf("dockplug %v, docker %v", errDp, errDk)
		}
	})
}

// BenchmarkCases runs the cases as benchmarks: one op is a whole case
// (N allocations then N releases); the per-allocation figures are reported
// as custom metrics. With -short every N is divided by 10. docker's case 3
// runs at N/10 (its cost per op grows with N; `go run ./ipam` extrapolates).
func BenchmarkCases(b *testing.B) {
	scale := 1
	if testing.Short() {
		scale = 10
	}
	for i, c := range Cases(scale) {
		for _, impl := range []string{dockplugImpl, dockerImpl} {
			n := c.N
			name := fmt.Sprintf("case%d/%s", i+1, impl)
			if impl == dockerImpl && c.DockerSlow {
				n = c.N / 10
				name += fmt.Sprintf("/N=%d", n)
			}
			b.Run(name, func(b *testing.B) {
				var last Result
				for b.Loop() {
					r, err := c.run(impl, n)
					if err != nil {
						b.Fatal(err)
					}
					last = r
				}
				b.ReportMetric(last.Alloc.NsPerOp(), "ns/alloc")
				b.ReportMetric(last.Release.NsPerOp(), "ns/release")
				b.ReportMetric(last.Alloc.AllocsPerOp(), "allocs/alloc")
				b.ReportMetric(last.Release.AllocsPerOp(), "allocs/release")
				b.ReportMetric(float64(last.HeapInuse), "heapinuse-B")
				b.ReportMetric(float64(last.HeapAlloc), "live-B")
			})
		}
	}
}

// BenchmarkPluginRequestAddress is one RequestAddress through the unix
// socket, the handler, the driver and a bbolt fsync, from 1 and 8 callers.
func BenchmarkPluginRequestAddress(b *testing.B) {
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			rig, err := startPlugin(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer rig.close()
			req := &ipam.RequestAddressRequest{PoolID: rig.poolID}
			var left atomic.Int64
			left.Store(int64(b.N))
			errs := make(chan error, conc)
			b.ResetTimer()
			for range conc {
				go func() {
					for left.Add(-1) >= 0 {
						if _, err := rig.client.RequestAddress(context.Background(), req); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for range conc {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
