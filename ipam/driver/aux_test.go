package driver

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/dockplug/dockplug/store/etcd/etcdtest"
)

// TestGlobalAuxSharedAcrossHosts: dockerd requests each --aux-address (a
// preferred address without an endpoint name) on every host that creates
// the network; the address is refcounted by host, like the gateway.
func TestGlobalAuxSharedAcrossHosts(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithoutFsync())
	ctx := t.Context()
	a, b := newGlobal(t, srv, "host-a"), newGlobal(t, srv, "host-b")
	p := mustPool(t, a, "10.66.0.0/24", "")
	mustPool(t, b, "10.66.0.0/24", "")
	aux := netip.MustParseAddr("10.66.0.5")
	for _, h := range []*globalSpace{a, b} {
		if got := mustAddr(t, h, AddrRequest{PoolID: p.ID, Address: aux}); got != aux {
			t.Fatalf("%s: aux %s", h.host, got)
		}
	}
	// The same host twice: another caller (one host holds a pool once).
	_, err := a.RequestAddress(ctx, AddrRequest{PoolID: p.ID, Address: aux})
	wantStatus(t, err, 409, "already held on host host-a")
	r := stored(t, a, "10.66.0.0/24")[aux]
	if !r.Aux || r.Hosts["host-a"] != 1 || r.Hosts["host-b"] != 1 {
		t.Fatalf("aux record %+v", r)
	}
	// An endpoint cannot take it, nor can dynamic allocation hand it out.
	_, err = b.RequestAddress(ctx, AddrRequest{PoolID: p.ID, Address: aux, Endpoint: "c1"})
	wantStatus(t, err, 409, "aux address")
	for range 20 {
		if x := mustAddr(t, a, AddrRequest{PoolID: p.ID, Endpoint: "dyn"}); x == aux {
			t.Fatal("aux address handed out dynamically")
		}
	}
	// An endpoint's address is no aux address.
	ep := mustAddr(t, b, AddrRequest{PoolID: p.ID, Address: netip.MustParseAddr("10.66.0.77"), Endpoint: "c2"})
	_, err = a.RequestAddress(ctx, AddrRequest{PoolID: p.ID, Address: ep})
	wantStatus(t, err, 409, "c2")
	// Listing names both holders.
	addrs, err := a.Addresses(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range addrs {
		if x.Address == aux && (!x.Aux || x.Host != "host-a,host-b") {
			t.Fatalf("listed %+v", x)
		}
	}
	// The key goes with its last holder.
	if err := a.ReleaseAddress(ctx, p.ID, aux); err != nil {
		t.Fatal(err)
	}
	if r, ok := stored(t, a, "10.66.0.0/24")[aux]; !ok || r.Hosts["host-a"] != 0 || r.Hosts["host-b"] != 1 {
		t.Fatalf("after host-a's release: %+v %v", r, ok)
	}
	if err := a.ReleaseAddress(ctx, p.ID, aux); err != nil { // again: harmless, host-b keeps it
		t.Fatal(err)
	}
	if _, ok := stored(t, a, "10.66.0.0/24")[aux]; !ok {
		t.Fatal("a second release by host-a freed host-b's aux address")
	}
	if err := b.ReleaseAddress(ctx, p.ID, aux); err != nil {
		t.Fatal(err)
	}
	if _, ok := stored(t, a, "10.66.0.0/24")[aux]; ok {
		t.Fatal("aux address kept after its last holder released it")
	}
	if got := mustAddr(t, b, AddrRequest{PoolID: p.ID, Address: aux, Endpoint: "c3"}); got != aux {
		t.Fatalf("freed aux address not available: %s", got)
	}
}

// TestGlobalFailedSharedHoldsAreUndone: a gateway or aux request that was
// applied but whose caller was told it failed (every reply lost until the
// call gave up) is undone later, so the hold does not outlive the network
// dockerd failed to create; and a request aborted that way can never be
// applied late.
func TestGlobalFailedSharedHoldsAreUndone(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithoutFsync())
	ctx := t.Context()
	a, l := newLossyGlobal(t, srv, "host-a")
	b := newGlobal(t, srv, "host-b")
	p := mustPool(t, b, "10.67.0.0/24", "")
	mustPool(t, a, "10.67.0.0/24", "")
	gw := mustAddr(t, b, AddrRequest{PoolID: p.ID, Gateway: true})
	aux := netip.MustParseAddr("10.67.0.9")
	mustAddr(t, b, AddrRequest{PoolID: p.ID, Address: aux})

	for _, req := range []AddrRequest{{PoolID: p.ID, Gateway: true}, {PoolID: p.ID, Address: aux}} {
		gp, err := a.pool(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		gp.mu.Lock()
		gp.doubtTry = time.Now() // settle later, below
		gp.mu.Unlock()
		// The first transaction is applied and its reply lost; from then
		// on, etcd does not answer this host until the call gives up.
		l.mu.Lock()
		l.next, l.hook = 1, func() { l.set(0, true) }
		l.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		_, err = a.RequestAddress(cctx, req)
		cancel()
		l.set(0, false)
		wantStatus(t, err, 503)
	}
	st := stored(t, a, "10.67.0.0/24")
	if st[gw].Hosts["host-a"] != 1 || st[aux].Hosts["host-a"] != 1 {
		t.Fatalf("the failed requests were not applied: the test lost nothing (gateway %v, aux %v)", st[gw].Hosts, st[aux].Hosts)
	}
	a.pools[p.ID].mu.Lock()
	a.pools[p.ID].doubtTry = time.Time{}
	a.pools[p.ID].mu.Unlock()
	a.resolveDoubts(ctx, a.pools[p.ID])
	st = stored(t, a, "10.67.0.0/24")
	if len(st[gw].Hosts) != 1 || st[gw].Hosts["host-b"] != 1 || len(st[aux].Hosts) != 1 || st[aux].Hosts["host-b"] != 1 {
		t.Fatalf("after settling: gateway holders %v, aux holders %v; want host-b only", st[gw].Hosts, st[aux].Hosts)
	}
	if n := len(a.pools[p.ID].shared); n != 0 {
		t.Fatalf("%d requests left to settle", n)
	}
	// An aborted request stays aborted: its retry finds it not applied.
	rq := newRequest()
	if applied, err := a.abort(ctx, rq, nil); err != nil || applied {
		t.Fatalf("abort of a request never sent: applied %v, %v", applied, err)
	}
	ok, _, err := a.txnOnce(ctx, rq, "late", nil, nil)
	if err != nil || ok {
		t.Fatalf("a late attempt of an aborted request was applied: %v %v", ok, err)
	}
	if applied, err := a.applied(ctx, rq, nil); err != nil || applied {
		t.Fatalf("aborted request reads as applied: %v %v", applied, err)
	}
}
