package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/docker/docker/libnetwork/bitmap"
	"github.com/docker/docker/libnetwork/ipamapi"
	"github.com/docker/docker/libnetwork/ipams/defaultipam"
	"github.com/docker/docker/libnetwork/ipamutils"
	"golang.org/x/sys/unix"

	"github.com/dockplug/dockplug/ipam/alloc"
)

// Implementation names, as printed.
const (
	dockplugImpl = "dockplug"
	dockerImpl   = "docker"
	// bitmapImpl is docker's bitmap package (libnetwork/bitmap) alone,
	// without the defaultipam API around it: only for cases 1 and 2, to
	// show how much of docker's cost is the data structure.
	bitmapImpl = "docker-bitmap"
)

// dockerSpace is the address space the docker allocator is asked for. Its
// local space is configured with the benchmark's default pools.
const dockerSpace = "LocalDefault"

// Case is one comparison from the issue. Each implementation runs the
// same operations on the same inputs.
type Case struct {
	Name string
	// N is the number of allocations (addresses or pools).
	N int
	// Unit names what one op is, for the table ("address", "pool").
	Unit string
	// DockerSlow marks the case whose cost for docker grows with N, so
	// that docker may run it at a smaller N.
	DockerSlow bool
	// Bitmap marks the cases also run with bitmapImpl.
	Bitmap bool
	// run runs the case for impl with n operations.
	run func(impl string, n int) (Result, error)
}

// Phase is the cost of one timed loop.
type Phase struct {
	Ops     int
	Elapsed time.Duration // wall time
	CPU     time.Duration // process CPU time (all threads, GC included)
	Mallocs uint64        // heap allocations during the loop
}

// NsPerOp is the mean wall time per operation.
func (p Phase) NsPerOp() float64 { return float64(p.Elapsed.Nanoseconds()) / float64(p.Ops) }

// CPUNsPerOp is the mean process CPU time per operation.
func (p Phase) CPUNsPerOp() float64 { return float64(p.CPU.Nanoseconds()) / float64(p.Ops) }

// AllocsPerOp is the mean number of heap allocations per operation.
func (p Phase) AllocsPerOp() float64 { return float64(p.Mallocs) / float64(p.Ops) }

// Result is one run of a case by one implementation.
type Result struct {
	Impl    string
	N       int
	Alloc   Phase
	Release Phase
	// HeapInuse and HeapAlloc are the growth of runtime.MemStats.HeapInuse
	// (spans in use, 8 KiB granularity) and HeapAlloc (live bytes) from
	// before the allocation phase to after it, both measured right after a
	// runtime.GC() with the allocator still reachable.
	HeapInuse int64
	HeapAlloc int64
}

// meter measures a timed loop: GC first, then time and count mallocs.
type meter struct {
	ms    runtime.MemStats
	start time.Time
	cpu0  time.Duration
	m0    uint64
}

func (m *meter) begin() {
	runtime.GC()
	runtime.ReadMemStats(&m.ms)
	m.m0 = m.ms.Mallocs
	m.cpu0 = processCPU()
	m.start = time.Now()
}

func (m *meter) end(ops int) Phase {
	el := time.Since(m.start)
	cpu := processCPU() - m.cpu0
	runtime.ReadMemStats(&m.ms)
	return Phase{Ops: ops, Elapsed: el, CPU: cpu, Mallocs: m.ms.Mallocs - m.m0}
}

// processCPU is the CPU time used by the process so far.
func processCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// heap returns HeapInuse and HeapAlloc after a GC.
func heap() (inuse, live int64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse), int64(ms.HeapAlloc)
}

var (
	pool4  = netip.MustParsePrefix("10.0.0.0/8")
	pool6  = netip.MustParsePrefix("fd00:1:2:3::/64")
	split4 = alloc.PoolSpec{Base: pool4, Size: 24}
)

// Cases returns the four cases of the issue; scale divides every N (1
// for the real sizes; tests use larger values).
func Cases(scale int) []Case {
	return []Case{
		{Name: "1. first-free alloc+release, 10.0.0.0/8", N: 1_000_000 / scale, Unit: "address", Bitmap: true,
			run: func(impl string, n int) (Result, error) { return runSequential(impl, pool4, n) }},
		{Name: "2. first-free alloc+release, IPv6 /64", N: 1_000_000 / scale, Unit: "address", Bitmap: true,
			run: func(impl string, n int) (Result, error) { return runSequential(impl, pool6, n) }},
		{Name: "3. random specific alloc+release, 10.0.0.0/8", N: 100_000 / scale, Unit: "address",
			DockerSlow: true, run: runRandom},
		{Name: "4. dynamic /24 pools from 10.0.0.0/8", N: 1_000 / max(1, scale/10), Unit: "pool",
			run: runPools},
	}
}

// seqAddrs returns the n addresses a first-free allocator hands out from
// an empty pool: the network address is reserved, so pool+1 .. pool+n.
func seqAddrs(pool netip.Prefix, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	a := pool.Addr()
	for i := range out {
		a = a.Next()
		out[i] = a
	}
	return out
}

// RandomSeed fixes the sequence of case 3, identical for both allocators.
const RandomSeed = 20240601

// randomAddrs returns n distinct addresses of pool drawn from a seeded
// generator, never the network or broadcast address.
func randomAddrs(pool netip.Prefix, n int) []netip.Addr {
	r := rand.New(rand.NewPCG(RandomSeed, RandomSeed))
	base := pool.Addr().As4()
	b := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	size := uint32(1) << (32 - pool.Bits())
	seen := make(map[uint32]bool, n)
	out := make([]netip.Addr, 0, n)
	for len(out) < n {
		off := r.Uint32N(size)
		if off == 0 || off == size-1 || seen[off] {
			continue
		}
		seen[off] = true
		x := b + off
		out = append(out, netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}))
	}
	return out
}

// netIPs converts to docker's argument type, outside any timed loop.
func netIPs(addrs []netip.Addr) []net.IP {
	out := make([]net.IP, len(addrs))
	for i, a := range addrs {
		out[i] = a.AsSlice()
	}
	return out
}

// newDocker returns docker's default IPAM with defaults as its local
// address space's predefined pools (docker's own is used when nil).
func newDocker(defaults []alloc.PoolSpec) (*defaultipam.Allocator, error) {
	var nets []*ipamutils.NetworkToSplit
	for _, d := range defaults {
		nets = append(nets, &ipamutils.NetworkToSplit{Base: d.Base, Size: d.Size})
	}
	if nets == nil {
		nets = ipamutils.GetLocalScopeDefaultNetworks()
	}
	return defaultipam.NewAllocator(nets, nil)
}

// dockerPool asks docker for an explicit pool and returns its ID.
func dockerPool(d *defaultipam.Allocator, pool netip.Prefix) (string, error) {
	p, err := d.RequestPool(ipamapi.PoolRequest{AddressSpace: dockerSpace, Pool: pool.String(), V6: pool.Addr().Is6()})
	if err != nil {
		return "", err
	}
	return p.PoolID, nil
}

// runSequential is cases 1 and 2: n first-free allocations, then the n
// addresses released in ascending order.
func runSequential(impl string, pool netip.Prefix, n int) (Result, error) {
	want := seqAddrs(pool, n)
	res := Result{Impl: impl, N: n}
	var m meter
	switch impl {
	case dockplugImpl:
		a, err := alloc.New(pool, netip.Prefix{})
		if err != nil {
			return res, err
		}
		in0, live0 := heap()
		m.begin()
		for i := range n {
			got, err := a.Allocate()
			if err != nil {
				return res, fmt.Errorf("allocation %d: %w", i, err)
			}
			if i&1023 == 0 && got != want[i] {
				return res, fmt.Errorf("allocation %d: got %s, want %s", i, got, want[i])
			}
		}
		res.Alloc = m.end(n)
		in1, live1 := heap()
		res.HeapInuse, res.HeapAlloc = in1-in0, live1-live0
		m.begin()
		for i, addr := range want {
			if err := a.Release(addr); err != nil {
				return res, fmt.Errorf("release %d: %w", i, err)
			}
		}
		res.Release = m.end(n)
		if a.Count() != 0 {
			return res, fmt.Errorf("%d addresses left after release", a.Count())
		}
		runtime.KeepAlive(a)
	case dockerImpl:
		d, err := newDocker(nil)
		if err != nil {
			return res, err
		}
		id, err := dockerPool(d, pool)
		if err != nil {
			return res, err
		}
		ips := netIPs(want)
		in0, live0 := heap()
		m.begin()
		for i := range n {
			got, _, err := d.RequestAddress(id, nil, nil)
			if err != nil {
				return res, fmt.Errorf("allocation %d: %w", i, err)
			}
			if i&1023 == 0 && !got.IP.Equal(ips[i]) {
				return res, fmt.Errorf("allocation %d: got %s, want %s", i, got.IP, ips[i])
			}
		}
		res.Alloc = m.end(n)
		in1, live1 := heap()
		res.HeapInuse, res.HeapAlloc = in1-in0, live1-live0
		m.begin()
		for i, ip := range ips {
			if err := d.ReleaseAddress(id, ip); err != nil {
				return res, fmt.Errorf("release %d: %w", i, err)
			}
		}
		res.Release = m.end(n)
		// Empty again: the next first-free address is the first one.
		got, _, err := d.RequestAddress(id, nil, nil)
		if err != nil || !got.IP.Equal(ips[0]) {
			return res, fmt.Errorf("after release: got %v %v, want %s", got, err, ips[0])
		}
		runtime.KeepAlive(d)
	case bitmapImpl:
		// What addrset does for this pool: one bitmap of the pool's
		// addresses (at most 2^63), network and IPv4 broadcast set.
		hostBits := min(pool.Addr().BitLen()-pool.Bits(), 63)
		bm := bitmap.New(uint64(1) << hostBits)
		if err := bm.Set(0); err != nil {
			return res, err
		}
		if pool.Addr().Is4() {
			if err := bm.Set(uint64(1)<<hostBits - 1); err != nil {
				return res, err
			}
		}
		in0, live0 := heap()
		m.begin()
		for i := range n {
			got, err := bm.SetAny(false)
			if err != nil {
				return res, fmt.Errorf("allocation %d: %w", i, err)
			}
			if i&1023 == 0 && got != uint64(i+1) {
				return res, fmt.Errorf("allocation %d: got ordinal %d, want %d", i, got, i+1)
			}
		}
		res.Alloc = m.end(n)
		in1, live1 := heap()
		res.HeapInuse, res.HeapAlloc = in1-in0, live1-live0
		m.begin()
		for i := range n {
			if err := bm.Unset(uint64(i + 1)); err != nil {
				return res, fmt.Errorf("release %d: %w", i, err)
			}
		}
		res.Release = m.end(n)
		runtime.KeepAlive(bm)
	default:
		return res, fmt.Errorf("unknown implementation %q", impl)
	}
	return res, nil
}

// runRandom is case 3: n distinct random specific addresses of the /8,
// then released in the same order.
func runRandom(impl string, n int) (Result, error) {
	addrs := randomAddrs(pool4, n)
	res := Result{Impl: impl, N: n}
	var m meter
	switch impl {
	case dockplugImpl:
		a, err := alloc.New(pool4, netip.Prefix{})
		if err != nil {
			return res, err
		}
		in0, live0 := heap()
		m.begin()
		for i, addr := range addrs {
			if err := a.AllocateSpecific(addr); err != nil {
				return res, fmt.Errorf("allocation %d (%s): %w", i, addr, err)
			}
		}
		res.Alloc = m.end(n)
		in1, live1 := heap()
		res.HeapInuse, res.HeapAlloc = in1-in0, live1-live0
		m.begin()
		for i, addr := range addrs {
			if err := a.Release(addr); err != nil {
				return res, fmt.Errorf("release %d: %w", i, err)
			}
		}
		res.Release = m.end(n)
		if a.Count() != 0 {
			return res, fmt.Errorf("%d addresses left after release", a.Count())
		}
		runtime.KeepAlive(a)
	case dockerImpl:
		d, err := newDocker(nil)
		if err != nil {
			return res, err
		}
		id, err := dockerPool(d, pool4)
		if err != nil {
			return res, err
		}
		ips := netIPs(addrs)
		in0, live0 := heap()
		m.begin()
		for i, ip := range ips {
			if _, _, err := d.RequestAddress(id, ip, nil); err != nil {
				return res, fmt.Errorf("allocation %d (%s): %w", i, ip, err)
			}
		}
		res.Alloc = m.end(n)
		in1, live1 := heap()
		res.HeapInuse, res.HeapAlloc = in1-in0, live1-live0
		m.begin()
		for i, ip := range ips {
			if err := d.ReleaseAddress(id, ip); err != nil {
				return res, fmt.Errorf("release %d: %w", i, err)
			}
		}
		res.Release = m.end(n)
		runtime.KeepAlive(d)
	default:
		return res, fmt.Errorf("unknown implementation %q", impl)
	}
	return res, nil
}

// dockplugPools is the part of dockplug's RequestPool/ReleasePool that
// corresponds to docker's in-memory allocator: the subnet allocator plus an
// address allocator per pool (docker's newPoolData), kept in a map by prefix.
type dockplugPools struct {
	subs  *alloc.PoolAllocator
	pools map[netip.Prefix]*alloc.Allocator
}

func newDockplugPools(defaults []alloc.PoolSpec) (*dockplugPools, error) {
	subs, err := alloc.NewPoolAllocator(defaults)
	if err != nil {
		return nil, err
	}
	return &dockplugPools{subs: subs, pools: map[netip.Prefix]*alloc.Allocator{}}, nil
}

func (p *dockplugPools) request(v6 bool) (netip.Prefix, error) {
	pfx, err := p.subs.Allocate(v6, nil)
	if err != nil {
		return pfx, err
	}
	a, err := alloc.New(pfx, netip.Prefix{})
	if err != nil {
		p.subs.Release(pfx)
		return netip.Prefix{}, err
	}
	p.pools[pfx] = a
	return pfx, nil
}

func (p *dockplugPools) release(pfx netip.Prefix) error {
	if err := p.subs.Release(pfx); err != nil {
		return err
	}
	delete(p.pools, pfx)
	return nil
}

// runPools is case 4: n dynamic /24 pools from a 10.0.0.0/8 default pool,
// then released in the order allocated.
func runPools(impl string, n int) (Result, error) {
	res := Result{Impl: impl, N: n}
	defaults := []alloc.PoolSpec{split4}
	wantAt := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
	}
	var m meter
	switch impl {
	case dockplugImpl:
		p, err := newDockplugPools(defaults)
		if err != nil {
			return res, err
		}
		got := make([]netip.Prefix, n)
		in0, live0 := heap()
		m.begin()
		for i := range n {
			if got[i], err = p.request(false); err != nil {
				return res, fmt.Errorf("pool %d: %w", i, err)
			}
		}
		res.Alloc = m.end(n)
		in1, live1 := heap()
		res.HeapInuse, res.HeapAlloc = in1-in0, live1-live0
		for i := range n {
			if got[i] != wantAt(i) {
				return res, fmt.Errorf("pool %d: got %s, want %s", i, got[i], wantAt(i))
			}
		}
		m.begin()
		for i, pfx := range got {
			if err := p.release(pfx); err != nil {
				return res, fmt.Errorf("release %d: %w", i, err)
			}
		}
		res.Release = m.end(n)
		runtime.KeepAlive(p)
	case dockerImpl:
		d, err := newDocker(defaults)
		if err != nil {
			return res, err
		}
		req := ipamapi.PoolRequest{AddressSpace: dockerSpace}
		// The pool IDs docker will return, made beforehand so that the
		// heap measured is the allocator's, not the caller's copy of IDs.
		ids := make([]string, n)
		for i := range ids {
			ids[i] = dockerSpace + "/" + wantAt(i).String()
		}
		in0, live0 := heap()
		m.begin()
		for i := range n {
			p, err := d.RequestPool(req)
			if err != nil {
				return res, fmt.Errorf("pool %d: %w", i, err)
			}
			if p.PoolID != ids[i] {
				return res, fmt.Errorf("pool %d: got %s, want %s", i, p.PoolID, ids[i])
			}
		}
		res.Alloc = m.end(n)
		in1, live1 := heap()
		res.HeapInuse, res.HeapAlloc = in1-in0, live1-live0
		m.begin()
		for i, id := range ids {
			if err := d.ReleasePool(id); err != nil {
				return res, fmt.Errorf("release %d: %w", i, err)
			}
		}
		res.Release = m.end(n)
		runtime.KeepAlive(d)
	default:
		return res, fmt.Errorf("unknown implementation %q", impl)
	}
	return res, nil
}
