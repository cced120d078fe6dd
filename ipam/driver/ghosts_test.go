package driver

import (
	"net/netip"
	"testing"
	"time"

	"github.com/dockplug/dockplug/store"
	"github.com/dockplug/dockplug/store/etcd/etcdtest"
)

// putBlock writes a block record for host straight into the store, as a
// host that claimed it and went away for good would have left it.
func putBlock(t *testing.T, s *globalSpace, pool, block, host string) {
	t.Helper()
	blk := netip.MustParsePrefix(block)
	key := s.blockDir(cidrSeg(netip.MustParsePrefix(pool))) + hexAddr(blk.Addr())
	rec := gBlockRecord{Host: host, Block: blk, At: time.Now().UTC(), Nonce: "test"}
	if _, _, err := s.kv.Txn(t.Context(), nil, store.Put(key, mustJSON(rec), 0)); err != nil {
		t.Fatal(err)
	}
}

func TestGlobalBlocksOfHostsGoneAreFreed(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithoutFsync())
	ctx := t.Context()
	a := newGlobal(t, srv, "host-a")
	p := mustPool(t, a, "10.55.0.0/28", "") // 4 blocks of 4
	for _, b := range []string{"10.55.0.0/30", "10.55.0.4/30", "10.55.0.8/30", "10.55.0.12/30"} {
		putBlock(t, a, "10.55.0.0/28", b, "ghost")
	}
	ghostAddr := netip.MustParseAddr("10.55.0.13")
	rec := gAddrRecord{AddrInfo: AddrInfo{Address: ghostAddr, Endpoint: "left-behind", Host: "ghost"}}
	if _, _, err := a.kv.Txn(ctx, nil, store.Put(a.addrDir(cidrSeg(p.Pool))+hexAddr(ghostAddr), mustJSON(rec), 0)); err != nil {
		t.Fatal(err)
	}

	// Dry run: reported, nothing freed.
	rep, err := a.Collect(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != 4 {
		t.Fatalf("report %+v, want the 4 blocks of ghost", rep)
	}
	for _, g := range rep {
		if g.Freed || g.Host != "ghost" || (g.Block.Contains(ghostAddr) != (g.Addresses == 1)) {
			t.Fatalf("dry run: %+v", g)
		}
	}
	if n := blockOwners(t, a, "10.55.0.0/28")["ghost"]; n != 4 {
		t.Fatalf("dry run freed blocks: ghost holds %d", n)
	}

	// No unclaimed block left: allocating frees ghost's empty blocks and
	// claims one; the block holding ghost's address stays ghost's.
	x := mustAddr(t, a, AddrRequest{PoolID: p.ID, Endpoint: "c1"})
	if owners := blockOwners(t, a, "10.55.0.0/28"); owners["host-a"] != 1 || owners["ghost"] != 1 {
		t.Fatalf("after allocating %s: block owners %v", x, owners)
	}
	if x == ghostAddr {
		t.Fatal("ghost's address handed out")
	}

	// A live host's blocks are never collected; once its lease expired,
	// its empty blocks are.
	b := newGlobal(t, srv, "host-b", func(c *GlobalConfig) { c.HostTTL = time.Second })
	putBlock(t, a, "10.55.0.0/28", "10.55.0.8/30", "host-b")
	if rep, err := a.Collect(ctx, true); err != nil || len(rep) != 1 || rep[0].Host != "ghost" || rep[0].Freed {
		t.Fatalf("with host-b alive: %+v %v", rep, err)
	}
	b.Close()
	for {
		if _, ok, err := a.kv.Get(ctx, a.hostKey("host-b")); err != nil {
			t.Fatal(err)
		} else if !ok {
			break
		}
		time.Sleep(100 * time.Millisecond) // the lease expires on etcd's clock
	}
	rep, err = a.Collect(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	freed := 0
	for _, g := range rep {
		if g.Freed {
			freed++
			if g.Host != "host-b" || g.Block != netip.MustParsePrefix("10.55.0.8/30") {
				t.Fatalf("freed %+v", g)
			}
		}
	}
	if owners := blockOwners(t, a, "10.55.0.0/28"); freed != 1 || owners["host-b"] != 0 || owners["ghost"] != 1 || owners["host-a"] != 1 {
		t.Fatalf("after host-b's lease expired: freed %d, owners %v", freed, owners)
	}
}
