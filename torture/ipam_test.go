package torture

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/driver"
)

// TestIPAMKill9 is section 3 for dockplug-ipam's local address space:
// concurrent RequestAddress and ReleaseAddress on one pool, as dockerd
// sends them for endpoints. No acknowledged allocation may be lost across
// a kill, and an address acknowledged to one caller and not released must
// never be acknowledged to another. After each restart the pool's
// addresses, read through the plugin, are the acknowledged ones, plus at
// most one per ambiguous RequestAddress, plus the ambiguous releases not
// applied.
func TestIPAMKill9(t *testing.T) {
	needBinary(t)
	p := newProc(t, "dockplug-ipam", ipam.Implements)
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	it := &ipamTorture{c: ipam.NewClient(p.client(clientBackoff)), admin: driver.NewAdminClient(p.adminClient(clientBackoff)),
		addrs: map[netip.Addr]*addrState{}}
	ctx := context.Background()
	pool, err := it.c.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: driver.LocalSpace, Pool: "10.77.0.0/22"})
	if err != nil {
		t.Fatalf("request pool: %v", err)
	}
	it.poolID = pool.PoolID

	torture(t, p, it, &it.st)

	// Drain: every address is released, as the daemon would when the
	// endpoints go; then the pool holds none.
	for a := range it.addrs {
		if err := it.c.ReleaseAddress(ctx, &ipam.ReleaseAddressRequest{PoolID: it.poolID, Address: a.String()}); err != nil {
			t.Errorf("drain: release %s: %v", a, err)
		}
		delete(it.addrs, a)
	}
	it.check("after the drain")
	if err := it.c.ReleasePool(ctx, &ipam.ReleasePoolRequest{PoolID: it.poolID}); err != nil {
		t.Errorf("release pool: %v", err)
	}
	if err := p.stop(); err != nil {
		t.Error(err)
	}
	report(t, "dockplug-ipam", &it.st, fmt.Sprintf("; %d allocations acknowledged, %d of them of an address held by another", it.handed, it.twice))
}

type addrPhase int

const (
	held       addrPhase = iota // acknowledged, no release sent
	releasing                   // release in flight
	ambRelease                  // release ambiguous: maybe still held
)

type addrState struct {
	phase addrPhase
	owner int
}

type ipamTorture struct {
	c      *ipam.Client
	admin  *driver.AdminClient
	poolID string

	mu     sync.Mutex
	addrs  map[netip.Addr]*addrState // what the clients believe they hold
	ambReq int                       // ambiguous RequestAddress calls since the last check
	handed int                       // acknowledged allocations
	twice  int                       // of those, of an address held by another
	seq    int
	st     stats
}

// maxAddrs bounds the addresses one worker holds.
const maxAddrs = 8

func (it *ipamTorture) op(w int, r *rand.Rand, clock *killClock) {
	it.mu.Lock()
	var mine []netip.Addr
	for a, s := range it.addrs {
		if s.owner == w && s.phase == held {
			mine = append(mine, a)
		}
	}
	it.seq++
	ep := fmt.Sprintf("ep-%d-%d", w, it.seq)
	it.mu.Unlock()
	sort.Slice(mine, func(i, j int) bool { return mine[i].Less(mine[j]) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if len(mine) == 0 || (len(mine) < maxAddrs && r.IntN(2) == 0) {
		b := clock.begin()
		res, err := it.c.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: it.poolID,
			Options: map[string]string{ipam.OptEndpointName: ep}})
		overlapped := clock.overlapped(b)
		var addr netip.Addr
		if err == nil {
			var pfx netip.Prefix
			if pfx, err = netip.ParsePrefix(res.Address); err != nil {
				err = fmt.Errorf("bad address in answer: %w", err)
			}
			addr = pfx.Addr()
		}
		it.mu.Lock()
		defer it.mu.Unlock()
		it.st.ops++
		switch {
		case err == nil:
			it.st.acked++
			it.handed++
			if s := it.addrs[addr]; s != nil {
				switch s.phase {
				case held:
					it.twice++
					it.st.violate("address %s acknowledged to worker %d while held by worker %d", addr, w, s.owner)
				case ambRelease:
					it.st.ambApplied++ // it was released after all
				}
			}
			it.addrs[addr] = &addrState{phase: held, owner: w}
		case ambiguousCall(err, overlapped):
			it.st.ambiguous++
			it.ambReq++
		default:
			it.st.reject(fmt.Errorf("request address: %w", err))
		}
		return
	}

	addr := mine[r.IntN(len(mine))]
	it.mu.Lock()
	s := it.addrs[addr]
	s.phase = releasing
	it.mu.Unlock()
	b := clock.begin()
	err := it.c.ReleaseAddress(ctx, &ipam.ReleaseAddressRequest{PoolID: it.poolID, Address: addr.String()})
	overlapped := clock.overlapped(b)
	it.mu.Lock()
	defer it.mu.Unlock()
	it.st.ops++
	mineStill := it.addrs[addr] == s
	switch {
	case err == nil:
		it.st.acked++
		if mineStill {
			delete(it.addrs, addr)
		}
	case ambiguousCall(err, overlapped):
		it.st.ambiguous++
		if mineStill {
			s.phase = ambRelease
		}
	default:
		it.st.reject(fmt.Errorf("release address %s: %w", addr, err))
		if !mineStill {
			it.twice++
			it.st.violate("address %s: its release failed (%v) but it was acknowledged to worker %d meanwhile", addr, err, it.addrs[addr].owner)
		} else {
			s.phase = held
		}
	}
}

func (it *ipamTorture) check(cycle string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	it.mu.Lock()
	defer it.mu.Unlock()
	res, err := it.admin.Pool(ctx, it.poolID)
	if err != nil {
		it.st.violate("%s: read pool %s: %v", cycle, it.poolID, err)
		return
	}
	inState := map[netip.Addr]bool{}
	for _, a := range res.Addresses {
		inState[a.Address] = true
	}
	for a, s := range it.addrs {
		switch s.phase {
		case held, releasing:
			if !inState[a] {
				it.st.violate("%s: acknowledged allocation %s (worker %d) lost", cycle, a, s.owner)
				delete(it.addrs, a)
			}
		case ambRelease:
			if inState[a] {
				s.phase = held // not applied: the owner holds it still
			} else {
				it.st.ambApplied++
				delete(it.addrs, a)
			}
		}
	}
	var extra []netip.Addr
	for a := range inState {
		if it.addrs[a] == nil {
			extra = append(extra, a)
		}
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i].Less(extra[j]) })
	if len(extra) > it.ambReq {
		it.st.violate("%s: the pool holds %d addresses no client was given, more than the %d ambiguous requests: %v", cycle, len(extra), it.ambReq, extra)
	}
	// Adopt them (the daemon would leak them), so that they are released.
	for i, a := range extra {
		it.st.ambApplied++
		it.addrs[a] = &addrState{phase: held, owner: i % *flagWorkers}
	}
	it.ambReq = 0
}
