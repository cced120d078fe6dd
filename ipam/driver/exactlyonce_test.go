package driver

import (
	"fmt"
	"testing"

	"github.com/dockplug/dockplug/store/etcd/etcdtest"
)

// TestGlobalRetryExactlyOnceAfterManyChanges loses the reply of a change
// and lets other hosts make 9 or more changes to the same records before
// the retry: the retry must find that its change was applied, and apply it
// neither twice nor fail.
func TestGlobalRetryExactlyOnceAfterManyChanges(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithoutFsync())
	ctx := t.Context()
	a, l := newLossyGlobal(t, srv, "host-a")
	var others []*globalSpace
	for i := range 20 {
		others = append(others, newGlobal(t, srv, fmt.Sprintf("host-%02d", i)))
	}
	p := mustPool(t, others[0], "10.77.0.0/24", "")
	gw := mustAddr(t, others[0], AddrRequest{PoolID: p.ID, Gateway: true})
	changes := func(hosts []*globalSpace, fn func(h *globalSpace)) func() {
		return func() {
			for _, h := range hosts {
				fn(h)
			}
		}
	}

	// Join the pool; 9 other hosts join while the reply is lost.
	l.mu.Lock()
	l.next, l.hook = 1, changes(others[1:10], func(h *globalSpace) { mustPool(t, h, "10.77.0.0/24", "") })
	l.mu.Unlock()
	mustPool(t, a, "10.77.0.0/24", "")
	if h := poolHolders(t, a, "10.77.0.0/24"); h["host-a"] != 1 || len(h) != 11 {
		t.Fatalf("pool holders after the retried join: %v", h)
	}

	// Take the gateway; 9 other hosts take it while the reply is lost.
	l.mu.Lock()
	l.next, l.hook = 1, changes(others[1:10], func(h *globalSpace) { mustAddr(t, h, AddrRequest{PoolID: p.ID, Gateway: true}) })
	l.mu.Unlock()
	if g := mustAddr(t, a, AddrRequest{PoolID: p.ID, Gateway: true}); g != gw {
		t.Fatalf("gateway %s, want %s", g, gw)
	}
	if h := stored(t, a, "10.77.0.0/24")[gw].Hosts; h["host-a"] != 1 || len(h) != 11 {
		t.Fatalf("gateway holders after the retried request: %v", h)
	}

	// Release the gateway and then the pool, while 9 more hosts join.
	l.mu.Lock()
	l.next, l.hook = 1, changes(others[10:19], func(h *globalSpace) { mustAddr(t, h, AddrRequest{PoolID: p.ID, Gateway: true}) })
	l.mu.Unlock()
	mustPool(t, others[10], "10.77.0.0/24", "") // (joins come first for the gateway below)
	for _, h := range others[11:19] {
		mustPool(t, h, "10.77.0.0/24", "")
	}
	if err := a.ReleaseAddress(ctx, p.ID, gw); err != nil {
		t.Fatalf("retried gateway release: %v", err)
	}
	if h := stored(t, a, "10.77.0.0/24")[gw].Hosts; h["host-a"] != 0 || len(h) != 19 {
		t.Fatalf("gateway holders after the retried release: %v", h)
	}
	l.mu.Lock()
	l.next, l.hook = 1, changes(others[19:], func(h *globalSpace) { mustPool(t, h, "10.77.0.0/24", "") })
	l.mu.Unlock()
	// 9 changes to the pool record: the joiner's, then 8 more by releases
	// and re-joins of the same host.
	hook := l.hook
	l.mu.Lock()
	l.hook = func() {
		hook()
		h := others[19]
		for range 4 {
			if err := h.ReleasePool(ctx, p.ID); err != nil {
				t.Error(err)
			}
			mustPool(t, h, "10.77.0.0/24", "")
		}
	}
	l.mu.Unlock()
	if err := a.ReleasePool(ctx, p.ID); err != nil {
		t.Fatalf("retried pool release: %v", err)
	}
	if h := poolHolders(t, a, "10.77.0.0/24"); h["host-a"] != 0 || len(h) != 20 {
		t.Fatalf("pool holders after the retried release: %v", h)
	}
	if l.lost != 4 {
		t.Fatalf("%d replies lost, want 4", l.lost)
	}
}
