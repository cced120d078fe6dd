package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store/etcd"
	"github.com/dockplug/dockplug/store/etcd/etcdtest"
)

// newGlobal is one host: its own etcd client and Space.
func newGlobal(tb testing.TB, srv *etcdtest.Server, host string, mod ...func(*GlobalConfig)) *globalSpace {
	tb.Helper()
	cli, err := etcd.Dial(context.Background(), srv.Endpoints())
	if err != nil {
		tb.Fatal(err)
	}
	cfg := GlobalConfig{Client: cli, HostID: host, Prefix: "/test/ipam/"}
	for _, m := range mod {
		m(&cfg)
	}
	sp, err := NewGlobalSpace(context.Background(), cfg)
	if err != nil {
		cli.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sp.Close() })
	return sp.(*globalSpace)
}

func mustPool(t *testing.T, s Space, pool, sub string) PoolInfo {
	t.Helper()
	req := PoolRequest{}
	if pool != "" {
		req.Pool = netip.MustParsePrefix(pool)
		req.V6 = req.Pool.Addr().Is6()
	}
	if sub != "" {
		req.SubPool = netip.MustParsePrefix(sub)
	}
	info, err := s.RequestPool(t.Context(), req)
	if err != nil {
		t.Fatalf("RequestPool %s %s: %v", pool, sub, err)
	}
	return info
}

func mustAddr(t *testing.T, s Space, req AddrRequest) netip.Addr {
	t.Helper()
	a, err := s.RequestAddress(t.Context(), req)
	if err != nil {
		t.Fatalf("RequestAddress %+v: %v", req, err)
	}
	return a
}

func wantStatus(t *testing.T, err error, status int, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want status %d, got success", status)
	}
	if got := plugin.StatusOf(err); got != status {
		t.Fatalf("want status %d, got %d: %v", status, got, err)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q does not mention %q", err, c)
		}
	}
}

// stored reads the address records of a pool straight from etcd.
func stored(t *testing.T, s *globalSpace, pool string) map[netip.Addr]gAddrRecord {
	t.Helper()
	resp, err := s.cli.Get(t.Context(), s.addrDir(cidrSeg(netip.MustParsePrefix(pool))), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]gAddrRecord{}
	for _, kv := range resp.Kvs {
		var r gAddrRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[r.Address]; dup {
			t.Fatalf("address %s stored twice", r.Address)
		}
		out[r.Address] = r
	}
	return out
}

// blockOwners counts the claimed blocks of a pool by host.
func blockOwners(t *testing.T, s *globalSpace, pool string) map[string]int {
	t.Helper()
	resp, err := s.cli.Get(t.Context(), s.blockDir(cidrSeg(netip.MustParsePrefix(pool))), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, kv := range resp.Kvs {
		var br gBlockRecord
		if err := json.Unmarshal(kv.Value, &br); err != nil {
			t.Fatal(err)
		}
		out[br.Host]++
	}
	return out
}

func countKeys(t *testing.T, s *globalSpace, prefix string) int64 {
	t.Helper()
	resp, err := s.cli.Get(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// countState counts the keys of pools, blocks and addresses, and checks
// that every other key (request records, hosts) expires with its lease.
func countState(t *testing.T, s *globalSpace) int64 {
	t.Helper()
	kvs, _, err := s.listPrefix(t.Context(), s.prefix, 0)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, kv := range kvs {
		if strings.HasPrefix(kv.Key, s.prefix+"reqs/") || strings.HasPrefix(kv.Key, s.prefix+"hosts/") {
			if kv.Lease == 0 {
				t.Errorf("%s without a lease", kv.Key)
			}
			continue
		}
		n++
	}
	return n
}

func TestGlobalPoolLifecycle(t *testing.T) {
	srv := etcdtest.Start(t)
	a := newGlobal(t, srv, "host-a")
	ctx := t.Context()

	info := mustPool(t, a, "10.10.0.0/24", "")
	if info.ID != "global/10.10.0.0/24" || info.Space != GlobalSpace || info.Dynamic || !slices.Equal(info.Hosts, []string{"host-a"}) {
		t.Fatalf("pool info %+v", info)
	}
	if bits, err := poolBits(info.ID); err != nil || bits != 24 || spaceOf(info.ID) != GlobalSpace {
		t.Fatalf("pool ID shape: bits %d %v, space %q", bits, err, spaceOf(info.ID))
	}
	gw := mustAddr(t, a, AddrRequest{PoolID: info.ID, Gateway: true})
	if gw != netip.MustParseAddr("10.10.0.1") {
		t.Fatalf("gateway %s", gw)
	}
	if again := mustAddr(t, a, AddrRequest{PoolID: info.ID, Gateway: true}); again != gw {
		t.Fatalf("second gateway request: %s", again)
	}
	x1 := mustAddr(t, a, AddrRequest{PoolID: info.ID, Endpoint: "web", MAC: "02:42:ac:11:00:02"})
	x2 := mustAddr(t, a, AddrRequest{PoolID: info.ID, Endpoint: "db"})
	if x1.String() != "10.10.0.2" || x2.String() != "10.10.0.3" {
		t.Fatalf("first free: %s %s", x1, x2)
	}
	pref := netip.MustParseAddr("10.10.0.100")
	if got := mustAddr(t, a, AddrRequest{PoolID: info.ID, Address: pref, Endpoint: "fixed"}); got != pref {
		t.Fatalf("preferred: %s", got)
	}
	_, err := a.RequestAddress(ctx, AddrRequest{PoolID: info.ID, Address: pref})
	wantStatus(t, err, 409, "10.10.0.100", "in use", "fixed", "global address space")
	if !errors.Is(err, alloc.ErrInUse) {
		t.Errorf("not ErrInUse: %v", err)
	}
	for _, bad := range []string{"10.10.0.0", "10.10.0.255"} {
		_, err = a.RequestAddress(ctx, AddrRequest{PoolID: info.ID, Address: netip.MustParseAddr(bad)})
		wantStatus(t, err, 400, bad)
		if !errors.Is(err, alloc.ErrReserved) {
			t.Errorf("%s: not ErrReserved: %v", bad, err)
		}
	}
	_, err = a.RequestAddress(ctx, AddrRequest{PoolID: info.ID, Address: netip.MustParseAddr("10.11.0.1")})
	wantStatus(t, err, 400, "10.11.0.1")
	if !errors.Is(err, alloc.ErrOutOfRange) {
		t.Errorf("not ErrOutOfRange: %v", err)
	}
	_, err = a.RequestAddress(ctx, AddrRequest{PoolID: "global/10.99.0.0/24"})
	wantStatus(t, err, 404, "10.99.0.0/24")

	addrs, err := a.Addresses(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 4 || addrs[0].Address != gw || !addrs[0].Gateway || addrs[1].Endpoint != "web" ||
		addrs[1].MAC != "02:42:ac:11:00:02" || addrs[1].Host != "host-a" || addrs[1].At.IsZero() || addrs[3].Endpoint != "fixed" {
		t.Fatalf("addresses %+v", addrs)
	}
	pools, err := a.Pools(ctx)
	if err != nil || len(pools) != 1 || pools[0].Allocated != 4 || pools[0].Gateway != gw {
		t.Fatalf("pools %+v %v", pools, err)
	}

	// Serial allocation does not reuse a just-released address.
	if err := a.ReleaseAddress(ctx, info.ID, x1); err != nil {
		t.Fatal(err)
	}
	s1 := mustAddr(t, a, AddrRequest{PoolID: info.ID, Serial: true})
	s2 := mustAddr(t, a, AddrRequest{PoolID: info.ID, Serial: true})
	if s1 == x1 || s2 == x1 || !x2.Less(s1) || !s1.Less(s2) {
		t.Errorf("serial after releasing %s: %s %s", x1, s1, s2)
	}
	// First free does.
	if got := mustAddr(t, a, AddrRequest{PoolID: info.ID}); got != x1 {
		t.Errorf("first free after release: %s, want %s", got, x1)
	}

	// Releases: unknown addresses are harmless.
	for _, x := range []string{"10.10.0.77", "10.10.0.0", "10.12.0.1"} {
		if err := a.ReleaseAddress(ctx, info.ID, netip.MustParseAddr(x)); err != nil {
			t.Errorf("release of unallocated %s: %v", x, err)
		}
	}
	if err := a.ReleasePool(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, a.ReleasePool(ctx, info.ID), 404)
	if pools, err := a.Pools(ctx); err != nil || len(pools) != 0 {
		t.Fatalf("pools after release %+v %v", pools, err)
	}
	if n := countState(t, a); n != 0 {
		t.Fatalf("%d keys left after the pool was released", n)
	}

	// A sub-pool: the ID names it, addresses come from it.
	info = mustPool(t, a, "10.20.0.0/16", "10.20.5.0/24")
	if info.ID != "global/10.20.0.0/16/10.20.5.0/24" {
		t.Fatalf("sub-pool ID %s", info.ID)
	}
	if bits, _ := poolBits(info.ID); bits != 16 {
		t.Fatalf("sub-pool ID bits %d", bits)
	}
	// As in the local space (and docker's IPAM), the first address of the
	// sub-pool: only the pool's network address is reserved.
	if gw := mustAddr(t, a, AddrRequest{PoolID: info.ID, Gateway: true}); gw.String() != "10.20.5.0" {
		t.Fatalf("sub-pool gateway %s", gw)
	}
	if x := mustAddr(t, a, AddrRequest{PoolID: info.ID}); x.String() != "10.20.5.1" {
		t.Fatalf("sub-pool address %s", x)
	}
	// A preferred address outside the sub-pool but inside the pool.
	mustAddr(t, a, AddrRequest{PoolID: info.ID, Address: netip.MustParseAddr("10.20.200.1")})
	_, err = a.RequestPool(ctx, PoolRequest{Pool: netip.MustParsePrefix("10.20.0.0/16"), SubPool: netip.MustParsePrefix("10.21.0.0/24")})
	wantStatus(t, err, 400)
}

func TestGlobalTwoHostsJoinSamePool(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newGlobal(t, srv, "host-a"), newGlobal(t, srv, "host-b")
	ctx := t.Context()
	pa := mustPool(t, a, "10.40.0.0/24", "")
	pb := mustPool(t, b, "10.40.0.0/24", "")
	if pa.ID != pb.ID || !slices.Equal(pb.Hosts, []string{"host-a", "host-b"}) {
		t.Fatalf("join: %+v %+v", pa, pb)
	}
	// The gateway is the same on both hosts, whoever asks first.
	gb := mustAddr(t, b, AddrRequest{PoolID: pb.ID, Gateway: true})
	ga := mustAddr(t, a, AddrRequest{PoolID: pa.ID, Gateway: true})
	if ga != gb || ga.String() != "10.40.0.1" {
		t.Fatalf("gateways %s %s", ga, gb)
	}
	_, err := a.RequestAddress(ctx, AddrRequest{PoolID: pa.ID, Gateway: true, Address: netip.MustParseAddr("10.40.0.254")})
	wantStatus(t, err, 409, "10.40.0.1", "10.40.0.254")

	seen := map[netip.Addr]string{ga: "gw"}
	for i := range 20 {
		for _, h := range []*globalSpace{a, b} {
			x := mustAddr(t, h, AddrRequest{PoolID: pa.ID, Endpoint: fmt.Sprintf("%s-%d", h.host, i)})
			if prev, dup := seen[x]; dup {
				t.Fatalf("%s handed out twice (%s, %s)", x, prev, h.host)
			}
			seen[x] = h.host
		}
	}
	// 20 addresses each: two blocks of 16 each.
	if owners := blockOwners(t, a, "10.40.0.0/24"); owners["host-a"] != 2 || owners["host-b"] != 2 {
		t.Errorf("block owners %v", owners)
	}
	st := stored(t, a, "10.40.0.0/24")
	if len(st) != 41 {
		t.Fatalf("%d addresses stored, want 41", len(st))
	}
	for x, h := range seen {
		if h != "gw" && st[x].Host != h {
			t.Fatalf("%s stored for %q, handed to %s", x, st[x].Host, h)
		}
	}
	// A preferred address in the other host's block: the block owner skips it.
	a.mu.Lock()
	gp := a.pools[pa.ID]
	a.mu.Unlock()
	gp.mu.Lock()
	var next netip.Addr
	for _, blk := range gp.blocks {
		for x := blk.pfx.Addr(); blk.pfx.Contains(x); x = x.Next() {
			if _, ok := seen[x]; !ok && !next.IsValid() && checkAddr(gp, x) == nil {
				next = x
			}
		}
	}
	gp.mu.Unlock()
	if !next.IsValid() {
		for _, blk := range gp.blocks {
			t.Logf("block %s own %d count %d", blk.pfx, blk.own, blk.a.Count())
		}
		t.Fatal("test setup: host-a's blocks are full")
	}
	mustAddr(t, b, AddrRequest{PoolID: pb.ID, Address: next, Endpoint: "pinned"})
	for range 20 {
		x := mustAddr(t, a, AddrRequest{PoolID: pa.ID})
		if x == next || seen[x] != "" {
			t.Fatalf("host-a handed out %s, taken already", x)
		}
		seen[x] = "host-a"
	}
	// An address of another host is not released by this one.
	wantStatus(t, a.ReleaseAddress(ctx, pa.ID, next), 409, "host-b")

	// Sub-pool mismatch on the same CIDR.
	_, err = b.RequestPool(ctx, PoolRequest{Pool: netip.MustParsePrefix("10.40.0.0/24"), SubPool: netip.MustParsePrefix("10.40.0.128/25")})
	wantStatus(t, err, 409, "10.40.0.0/24")

	// The gateway stays while a host holds it.
	if err := a.ReleaseAddress(ctx, pa.ID, ga); err != nil {
		t.Fatal(err)
	}
	if _, ok := stored(t, a, "10.40.0.0/24")[ga]; !ok {
		t.Fatal("gateway gone while host-b holds it")
	}
	// A host leaving the pool leaves it to the other.
	if err := a.ReleasePool(ctx, pa.ID); err != nil {
		t.Fatal(err)
	}
	pools, err := b.Pools(ctx)
	if err != nil || len(pools) != 1 || !slices.Equal(pools[0].Hosts, []string{"host-b"}) {
		t.Fatalf("after host-a left: %+v %v", pools, err)
	}
	wantStatus(t, a.ReleasePool(ctx, pa.ID), 404, "host-a")
	if err := b.ReleaseAddress(ctx, pb.ID, gb); err != nil {
		t.Fatal(err)
	}
	if _, ok := stored(t, a, "10.40.0.0/24")[ga]; ok {
		t.Fatal("gateway kept after its last holder released it")
	}
	if err := b.ReleasePool(ctx, pb.ID); err != nil {
		t.Fatal(err)
	}
	if n := countState(t, a); n != 0 {
		t.Fatalf("%d keys left after the last host released the pool", n)
	}
}

// poolHolders reads a pool's holder counts straight from etcd.
func poolHolders(t *testing.T, s *globalSpace, pool string) map[string]int {
	t.Helper()
	resp, err := s.cli.Get(t.Context(), s.poolKey(cidrSeg(netip.MustParsePrefix(pool))))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("pool %s: %v %v", pool, resp, err)
	}
	var rec gPoolRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	return rec.Hosts
}

// A host holds a global pool once: a second request for the same CIDR from
// the same host is refused as an overlapping local pool is (two networks on
// one host would share a subnet and gateway); only another host joins. It
// used to be accepted, counting the host twice.
func TestGlobalSameHostTwiceRefused(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newGlobal(t, srv, "host-a"), newGlobal(t, srv, "host-b")
	ctx := t.Context()
	again := func(h *globalSpace, pool, sub string, holders ...string) {
		t.Helper()
		req := PoolRequest{Pool: netip.MustParsePrefix(pool)}
		if sub != "" {
			req.SubPool = netip.MustParsePrefix(sub)
		}
		_, err := h.RequestPool(ctx, req)
		wantStatus(t, err, 409, append([]string{pool, "already allocated on this host", globalPoolID(req.Pool, req.SubPool)}, holders...)...)
	}
	p := mustPool(t, a, "10.42.0.0/24", "")
	again(a, "10.42.0.0/24", "", "host-a")
	if h := poolHolders(t, a, "10.42.0.0/24"); !maps.Equal(h, map[string]int{"host-a": 1}) {
		t.Fatalf("holders after a refused second request: %v", h)
	}
	mustPool(t, b, "10.42.0.0/24", "") // another host joins
	again(a, "10.42.0.0/24", "", "host-a, host-b")
	again(b, "10.42.0.0/24", "", "host-a, host-b")
	if h := poolHolders(t, a, "10.42.0.0/24"); !maps.Equal(h, map[string]int{"host-a": 1, "host-b": 1}) {
		t.Fatalf("holders: %v", h)
	}
	// With a sub-pool too.
	mustPool(t, a, "10.43.0.0/16", "10.43.1.0/24")
	again(a, "10.43.0.0/16", "10.43.1.0/24", "host-a")
	// A dynamic request never lands on an existing pool.
	if d := mustPool(t, a, "", ""); d.Pool.Overlaps(p.Pool) || d.Pool.Overlaps(netip.MustParsePrefix("10.43.0.0/16")) {
		t.Fatalf("dynamic pool %s overlaps an existing one", d.Pool)
	}
	// Once it has released the pool, the host may request it again.
	if err := a.ReleasePool(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if q := mustPool(t, a, "10.42.0.0/24", ""); q.ID != p.ID || !slices.Equal(q.Hosts, []string{"host-a", "host-b"}) {
		t.Fatalf("rejoin after release: %+v", q)
	}
	// A retry whose first attempt was applied but whose reply was lost
	// still succeeds, for a join and for a creation: the nonce tells it.
	c, l := newLossyGlobal(t, srv, "host-c")
	l.set(1, false)
	if q := mustPool(t, c, "10.42.0.0/24", ""); !slices.Equal(q.Hosts, []string{"host-a", "host-b", "host-c"}) {
		t.Fatalf("join with the reply lost: %+v", q)
	}
	l.set(1, false)
	mustPool(t, c, "10.44.0.0/24", "")
	if l.lost != 2 {
		t.Fatalf("%d replies lost, want 2", l.lost)
	}
	if h := poolHolders(t, c, "10.42.0.0/24"); h["host-c"] != 1 {
		t.Fatalf("holders after a retried join: %v", h)
	}
	if h := poolHolders(t, c, "10.44.0.0/24"); !maps.Equal(h, map[string]int{"host-c": 1}) {
		t.Fatalf("holders after a retried creation: %v", h)
	}
	again(c, "10.42.0.0/24", "", "host-c")
	again(c, "10.44.0.0/24", "", "host-c")
}

func TestGlobalExplicitGatewaySharedAcrossHosts(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newGlobal(t, srv, "host-a"), newGlobal(t, srv, "host-b")
	p := mustPool(t, a, "10.41.0.0/24", "")
	mustPool(t, b, "10.41.0.0/24", "")
	want := netip.MustParseAddr("10.41.0.254")
	if gw := mustAddr(t, a, AddrRequest{PoolID: p.ID, Gateway: true, Address: want}); gw != want {
		t.Fatalf("explicit gateway %s", gw)
	}
	if gw := mustAddr(t, b, AddrRequest{PoolID: p.ID, Gateway: true}); gw != want {
		t.Fatalf("host-b's gateway %s, want %s", gw, want)
	}
	if gw := mustAddr(t, b, AddrRequest{PoolID: p.ID, Gateway: true, Address: want}); gw != want {
		t.Fatalf("host-b's explicit gateway %s", gw)
	}
	// With an explicit gateway, .1 goes to an endpoint.
	if x := mustAddr(t, a, AddrRequest{PoolID: p.ID}); x.String() != "10.41.0.1" {
		t.Errorf("first address with an explicit gateway: %s", x)
	}
}

func TestGlobalOverlapRefused(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newGlobal(t, srv, "host-a"), newGlobal(t, srv, "host-b")
	mustPool(t, a, "10.30.0.0/16", "")
	for _, p := range []string{"10.30.1.0/24", "10.0.0.0/8", "10.30.0.0/17"} {
		_, err := b.RequestPool(t.Context(), PoolRequest{Pool: netip.MustParsePrefix(p)})
		wantStatus(t, err, 409, p, "10.30.0.0/16", "global/10.30.0.0/16", "host-a")
	}
	// Concurrent overlapping requests: exactly one of each overlapping set wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []netip.Prefix
	for i, p := range []string{"172.30.0.0/16", "172.30.4.0/24", "172.30.0.0/20", "172.30.128.0/17"} {
		h := []*globalSpace{a, b}[i%2]
		wg.Go(func() {
			info, err := h.RequestPool(t.Context(), PoolRequest{Pool: netip.MustParsePrefix(p)})
			if err == nil {
				mu.Lock()
				won = append(won, info.Pool)
				mu.Unlock()
			} else if plugin.StatusOf(err) != 409 {
				t.Errorf("%s: %v", p, err)
			}
		})
	}
	wg.Wait()
	for i := range won {
		for j := range i {
			if won[i].Overlaps(won[j]) {
				t.Fatalf("overlapping pools both created: %v", won)
			}
		}
	}
	if len(won) == 0 {
		t.Fatal("no pool created")
	}
}

func TestGlobalDynamicPools(t *testing.T) {
	srv := etcdtest.Start(t)
	hosts := []*globalSpace{newGlobal(t, srv, "host-a"), newGlobal(t, srv, "host-b"), newGlobal(t, srv, "host-c")}
	mustPool(t, hosts[0], "10.0.1.0/24", "") // an explicit pool in the way
	var mu sync.Mutex
	var got []PoolInfo
	var wg sync.WaitGroup
	for _, h := range hosts {
		for range 4 {
			wg.Go(func() {
				info, err := h.RequestPool(t.Context(), PoolRequest{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, info)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if len(got) != 12 {
		t.Fatalf("%d dynamic pools", len(got))
	}
	base := netip.MustParsePrefix("10.0.0.0/8")
	for i, p := range got {
		if !p.Dynamic || p.Pool.Bits() != 24 || !base.Contains(p.Pool.Addr()) || p.ID != "global/"+p.Pool.String() {
			t.Fatalf("dynamic pool %+v", p)
		}
		if p.Pool.String() == "10.0.1.0/24" {
			t.Fatalf("dynamic pool %s overlaps the explicit one", p.Pool)
		}
		for _, q := range got[:i] {
			if p.Pool.Overlaps(q.Pool) {
				t.Fatalf("dynamic pools %s and %s overlap", p.Pool, q.Pool)
			}
		}
	}
	// No IPv6 default pool in the global space: a clear error.
	_, err := hosts[0].RequestPool(t.Context(), PoolRequest{V6: true})
	wantStatus(t, err, 507, "IPv6")
	if !errors.Is(err, alloc.ErrNoMoreSubnets) {
		t.Errorf("not ErrNoMoreSubnets: %v", err)
	}
	// With one configured, IPv6 dynamic pools work.
	v6 := newGlobal(t, srv, "host-v6", func(c *GlobalConfig) {
		c.DefaultPools = []alloc.PoolSpec{{Base: netip.MustParsePrefix("fd42::/48"), Size: 64}}
	})
	p6, err := v6.RequestPool(t.Context(), PoolRequest{V6: true})
	if err != nil || p6.Pool.String() != "fd42::/64" {
		t.Fatalf("IPv6 dynamic pool %+v %v", p6, err)
	}
}

func TestGlobalIPv6(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := newGlobal(t, srv, "host-a"), newGlobal(t, srv, "host-b")
	ctx := t.Context()

	p := mustPool(t, a, "fd00:1::/64", "")
	if gw := mustAddr(t, a, AddrRequest{PoolID: p.ID, Gateway: true}); gw.String() != "fd00:1::1" {
		t.Fatalf("IPv6 gateway %s", gw)
	}
	if x := mustAddr(t, a, AddrRequest{PoolID: p.ID}); x.String() != "fd00:1::2" {
		t.Fatalf("IPv6 address %s", x)
	}
	far := netip.MustParseAddr("fd00:1::ffff:ffff:ffff:fffe")
	if x := mustAddr(t, a, AddrRequest{PoolID: p.ID, Address: far}); x != far {
		t.Fatalf("IPv6 preferred %s", x)
	}
	_, err := a.RequestAddress(ctx, AddrRequest{PoolID: p.ID, Address: netip.MustParseAddr("fd00:1::")})
	wantStatus(t, err, 400)
	if bits, _ := poolBits(p.ID); bits != 64 {
		t.Fatalf("IPv6 pool ID bits %d", bits)
	}

	// A /120 shared by two hosts, allocated to exhaustion: 255 addresses
	// (the subnet-router anycast address is reserved), never twice.
	small := mustPool(t, a, "fd00:2::/120", "")
	mustPool(t, b, "fd00:2::/120", "")
	seen := map[netip.Addr]bool{mustAddr(t, b, AddrRequest{PoolID: small.ID, Gateway: true}): true}
	for i := 0; ; i++ {
		h := []*globalSpace{a, b}[i%2]
		x, err := h.RequestAddress(ctx, AddrRequest{PoolID: small.ID, Serial: i%3 == 0})
		if err != nil {
			wantStatus(t, err, 507, "fd00:2::/120")
			if !errors.Is(err, alloc.ErrPoolExhausted) {
				t.Errorf("not ErrPoolExhausted: %v", err)
			}
			break
		}
		if seen[x] {
			t.Fatalf("%s handed out twice", x)
		}
		seen[x] = true
		if i > 300 {
			t.Fatal("a /120 gave more than 255 addresses")
		}
	}
	if len(seen) != 255 {
		t.Fatalf("%d addresses from a /120, want 255", len(seen))
	}
	if st := stored(t, a, "fd00:2::/120"); len(st) != 255 {
		t.Fatalf("%d stored", len(st))
	}
	// Both hosts still allocate after releases, anywhere in the pool.
	x := netip.MustParseAddr("fd00:2::80")
	holder := stored(t, a, "fd00:2::/120")[x].Host
	h := map[string]*globalSpace{"host-a": a, "host-b": b}[holder]
	if err := h.ReleaseAddress(ctx, small.ID, x); err != nil {
		t.Fatal(err)
	}
	other := map[string]*globalSpace{"host-a": b, "host-b": a}[holder]
	if got := mustAddr(t, other, AddrRequest{PoolID: small.ID}); got != x {
		t.Fatalf("after release of %s by %s, the other host got %s", x, holder, got)
	}
}

// allocateConcurrently runs workers goroutines per host, each making n
// requests; it returns what each host was given (acknowledged) and the
// errors.
func allocateConcurrently(t *testing.T, hosts []*globalSpace, poolID string, workers, n int, timeout time.Duration) (map[netip.Addr]string, []error) {
	var mu sync.Mutex
	acked := map[netip.Addr]string{}
	var errs []error
	var wg sync.WaitGroup
	for _, h := range hosts {
		for w := range workers {
			wg.Go(func() {
				for i := range n {
					ctx, cancel := context.WithTimeout(t.Context(), timeout)
					x, err := h.RequestAddress(ctx, AddrRequest{PoolID: poolID, Endpoint: fmt.Sprintf("%s-%d-%d", h.host, w, i), Serial: i%4 == 3})
					cancel()
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else if prev, dup := acked[x]; dup {
						t.Errorf("%s handed out twice: to %s and %s", x, prev, h.host)
					} else {
						acked[x] = h.host
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return acked, errs
}

// allocateUntil is allocateConcurrently until done is closed.
func allocateUntil(t *testing.T, hosts []*globalSpace, poolID string, workers int, done <-chan struct{}, timeout time.Duration) (map[netip.Addr]string, []error) {
	var mu sync.Mutex
	acked := map[netip.Addr]string{}
	var errs []error
	var wg sync.WaitGroup
	for _, h := range hosts {
		for w := range workers {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(t.Context(), timeout)
					x, err := h.RequestAddress(ctx, AddrRequest{PoolID: poolID, Endpoint: fmt.Sprintf("%s-%d-%d", h.host, w, i)})
					cancel()
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else if prev, dup := acked[x]; dup {
						t.Errorf("%s handed out twice: to %s and %s", x, prev, h.host)
					} else {
						acked[x] = h.host
					}
					mu.Unlock()
					if err != nil {
						time.Sleep(50 * time.Millisecond)
					}
				}
			})
		}
	}
	wg.Wait()
	return acked, errs
}

func TestGlobalConcurrentHosts(t *testing.T) {
	srv := etcdtest.Start(t)
	hosts := []*globalSpace{newGlobal(t, srv, "host-a"), newGlobal(t, srv, "host-b"), newGlobal(t, srv, "host-c")}
	ctx := t.Context()
	var p PoolInfo
	for _, h := range hosts {
		p = mustPool(t, h, "10.50.0.0/22", "")
	}
	gw := mustAddr(t, hosts[1], AddrRequest{PoolID: p.ID, Gateway: true})
	acked, errs := allocateConcurrently(t, hosts, p.ID, 6, 50, time.Minute)
	if len(errs) > 0 {
		t.Fatalf("%d errors, first: %v", len(errs), errs[0])
	}
	if len(acked) != 900 {
		t.Fatalf("%d acknowledged, want 900", len(acked))
	}
	st := stored(t, hosts[0], "10.50.0.0/22")
	if len(st) != 901 {
		t.Fatalf("%d stored, want 900 + gateway", len(st))
	}
	for x, h := range acked {
		if x == gw {
			t.Fatalf("gateway %s handed out to %s", gw, h)
		}
		if r, ok := st[x]; !ok || r.Host != h {
			t.Fatalf("acknowledged %s (%s) stored as %+v", x, h, r)
		}
	}
	pools, err := hosts[2].Pools(ctx)
	if err != nil || len(pools) != 1 || pools[0].Allocated != 901 || len(pools[0].Hosts) != 3 {
		t.Fatalf("pools %+v %v", pools, err)
	}
	// 300 addresses each: 5 blocks of 64 each; the 16th block is left for
	// whoever needs it first, then the hosts take free addresses anywhere.
	owners := blockOwners(t, hosts[0], "10.50.0.0/22")
	t.Logf("blocks claimed: %v", owners)
	for _, h := range hosts {
		if n := owners[h.host]; n < 4 || n > 6 {
			t.Errorf("%s claimed %d blocks", h.host, n)
		}
	}

	// Each host releases its addresses, concurrently; blocks are given back.
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			for x, holder := range acked {
				if holder == h.host {
					if err := h.ReleaseAddress(ctx, p.ID, x); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if st := stored(t, hosts[0], "10.50.0.0/22"); len(st) != 1 || !st[gw].Gateway {
		t.Fatalf("after releases: %d stored", len(st))
	}
	if n := countKeys(t, hosts[0], hosts[0].blockDir(cidrSeg(p.Pool))); n != 0 {
		t.Errorf("%d blocks still claimed after every address was released", n)
	}
	for _, h := range hosts {
		if err := h.ReleasePool(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := countState(t, hosts[0]); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

func TestGlobalHostRestartKeepsView(t *testing.T) {
	srv := etcdtest.Start(t)
	a := newGlobal(t, srv, "host-a")
	b := newGlobal(t, srv, "host-b")
	p := mustPool(t, a, "10.60.0.0/16", "")
	mustPool(t, b, "10.60.0.0/16", "")
	mustAddr(t, a, AddrRequest{PoolID: p.ID, Gateway: true})
	seen := map[netip.Addr]bool{}
	add := func(h Space, req AddrRequest) {
		t.Helper()
		x := mustAddr(t, h, req)
		if seen[x] {
			t.Fatalf("%s handed out twice", x)
		}
		seen[x] = true
	}
	for i := range 50 {
		add(a, AddrRequest{PoolID: p.ID, Serial: i%2 == 0})
		add(b, AddrRequest{PoolID: p.ID})
	}
	blocks := countKeys(t, a, a.blockDir(cidrSeg(p.Pool)))
	// host-a restarts: a new process, same host ID, nothing local.
	a.Close()
	a2 := newGlobal(t, srv, "host-a")
	for range 50 {
		add(a2, AddrRequest{PoolID: p.ID})
		add(b, AddrRequest{PoolID: p.ID})
	}
	if st := stored(t, a2, "10.60.0.0/16"); len(st) != 201 {
		t.Fatalf("%d stored, want 201", len(st))
	}
	// 100 addresses per host fit in 2 blocks of 64 each: host-a went on in
	// its own blocks rather than claiming new ones.
	if after := countKeys(t, a2, a2.blockDir(cidrSeg(p.Pool))); after > 4 || blocks > 4 {
		t.Errorf("blocks: %d before the restart, %d after", blocks, after)
	}
	// The restarted host releases what it allocated before the restart.
	for x, r := range stored(t, a2, "10.60.0.0/16") {
		if r.Host == "host-a" && !r.Gateway {
			if err := a2.ReleaseAddress(t.Context(), p.ID, x); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := stored(t, a2, "10.60.0.0/16"); len(st) != 101 {
		t.Fatalf("%d stored after host-a's releases, want 101", len(st))
	}
}

func TestGlobalEtcdRestartDuringAllocation(t *testing.T) {
	srv := etcdtest.Start(t)
	retry := func(c *GlobalConfig) { c.Retry = etcd.Retry{Attempt: 2 * time.Second, Total: 20 * time.Second} }
	hosts := []*globalSpace{newGlobal(t, srv, "host-a", retry), newGlobal(t, srv, "host-b", retry), newGlobal(t, srv, "host-c", retry)}
	var p PoolInfo
	for _, h := range hosts {
		p = mustPool(t, h, "10.70.0.0/20", "")
	}
	gw := mustAddr(t, hosts[0], AddrRequest{PoolID: p.ID, Gateway: true})

	// A quick restart, which the retries hide, then an outage longer than
	// the callers wait, while every host allocates: some calls fail.
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond)
		srv.Restart()
		time.Sleep(500 * time.Millisecond)
		srv.Stop()
		time.Sleep(3 * time.Second)
		srv.Restart()
		time.Sleep(300 * time.Millisecond)
	}()
	acked, errs := allocateUntil(t, hosts, p.ID, 4, done, 2*time.Second)
	t.Logf("%d acknowledged, %d errors", len(acked), len(errs))
	if len(errs) == 0 {
		t.Log("no call failed during the outage")
	}
	for _, err := range errs {
		if !strings.Contains(err.Error(), "global address space") {
			t.Errorf("unclear error: %v", err)
		}
		if s := plugin.StatusOf(err); s != 503 {
			t.Errorf("status %d for %v", s, err)
		}
	}
	// After the restarts everything works again.
	more, errs := allocateConcurrently(t, hosts, p.ID, 2, 10, time.Minute)
	if len(errs) > 0 {
		t.Fatalf("after the restart: %v", errs[0])
	}
	for x, h := range more {
		if prev, dup := acked[x]; dup {
			t.Fatalf("%s handed out twice: %s and %s", x, prev, h)
		}
		acked[x] = h
	}
	st := stored(t, hosts[0], "10.70.0.0/20")
	for x, h := range acked {
		if r, ok := st[x]; !ok || r.Host != h {
			t.Fatalf("acknowledged %s (%s) stored as %+v, %v", x, h, r, ok)
		}
	}
	// What is stored beyond the acknowledged addresses are writes whose
	// outcome was unknown to the caller; settling them deletes them.
	t.Logf("%d stored beyond the gateway and the %d acknowledged before settling", len(st)-1-len(acked), len(acked))
	for _, h := range hosts {
		h.mu.Lock()
		pools := slices.Collect(mapValues(h.pools))
		h.mu.Unlock()
		for _, gp := range pools {
			gp.mu.Lock()
			gp.doubtTry = time.Time{}
			gp.mu.Unlock()
			h.resolveDoubts(t.Context(), gp)
		}
	}
	st = stored(t, hosts[0], "10.70.0.0/20")
	delete(st, gw)
	for x, r := range st {
		if _, ok := acked[x]; !ok {
			t.Errorf("%s stored for %s but never acknowledged", x, r.Host)
		}
	}
	if len(st) != len(acked) {
		t.Errorf("%d stored, %d acknowledged", len(st), len(acked))
	}
}

func mapValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// The driver routes "global" requests and pool IDs to the global space.
func TestGlobalThroughDriver(t *testing.T) {
	srv := etcdtest.Start(t)
	g := newGlobal(t, srv, "host-a")
	d, err := New(Config{StateDir: t.TempDir(), HostID: "host-a", Global: g,
		HostRoutes: func() ([]netip.Prefix, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()
	pr, err := d.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: GlobalSpace, Pool: "10.80.0.0/24"})
	if err != nil || pr.PoolID != "global/10.80.0.0/24" || pr.Pool != "10.80.0.0/24" {
		t.Fatalf("%+v %v", pr, err)
	}
	ar, err := d.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: pr.PoolID, Options: map[string]string{ipam.OptRequestAddressType: ipam.Gateway}})
	if err != nil || ar.Address != "10.80.0.1/24" {
		t.Fatalf("gateway %+v %v", ar, err)
	}
	ar, err = d.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: pr.PoolID, Options: map[string]string{ipam.OptEndpointName: "web"}})
	if err != nil || ar.Address != "10.80.0.2/24" {
		t.Fatalf("address %+v %v", ar, err)
	}
	pools, err := d.Pools(ctx)
	if err != nil || len(pools) != 1 || pools[0].Space != GlobalSpace || pools[0].Allocated != 2 {
		t.Fatalf("pools %+v %v", pools, err)
	}
	if err := d.ReleaseAddress(ctx, &ipam.ReleaseAddressRequest{PoolID: pr.PoolID, Address: "10.80.0.2"}); err != nil {
		t.Fatal(err)
	}
	if err := d.ReleasePool(ctx, &ipam.ReleasePoolRequest{PoolID: pr.PoolID}); err != nil {
		t.Fatal(err)
	}
	// An unspecified address asks for a dynamic pool (of that size), each
	// time another one: it is not the same pool requested twice.
	for _, c := range []struct{ pool, want string }{
		{"0.0.0.0/0", "10.0.0.0/24"}, {"0.0.0.0/0", "10.0.1.0/24"}, {"0.0.0.0/28", "10.0.2.0/28"},
	} {
		pr, err := d.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: GlobalSpace, Pool: c.pool})
		if err != nil || pr.Pool != c.want {
			t.Fatalf("%s: %+v %v, want %s", c.pool, pr, err, c.want)
		}
	}
	_, err = d.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: GlobalSpace, Pool: "0.0.0.0/7"})
	wantStatus(t, err, 400, "/7")
}

func TestGlobalConfigErrors(t *testing.T) {
	if _, err := NewGlobalSpace(t.Context(), GlobalConfig{HostID: "x"}); err == nil {
		t.Error("no client accepted")
	}
	srv := etcdtest.Start(t)
	cli := srv.Client()
	if _, err := NewGlobalSpace(t.Context(), GlobalConfig{Client: cli}); err == nil {
		t.Error("no host ID accepted")
	}
	if _, err := NewGlobalSpace(t.Context(), GlobalConfig{Client: cli, HostID: "x", BlockBits: 40}); err == nil {
		t.Error("block bits 40 accepted")
	}
	srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := NewGlobalSpace(ctx, GlobalConfig{Client: cli, HostID: "x", KeepClient: true, Retry: etcd.Retry{Attempt: 500 * time.Millisecond}})
	if err == nil || !strings.Contains(err.Error(), "global address space") || plugin.StatusOf(err) != 503 {
		t.Errorf("etcd down: %v", err)
	}
}

func TestGlobalBlockBits(t *testing.T) {
	for _, c := range []struct {
		pool string
		want int
	}{{"10.0.0.0/8", 6}, {"10.0.0.0/22", 6}, {"10.0.0.0/23", 5}, {"10.0.0.0/24", 4}, {"10.0.0.0/28", 2},
		{"10.0.0.0/30", 2}, {"10.0.0.0/31", 1}, {"10.0.0.0/32", 0}, {"fd00::/64", 6}, {"fd00::/120", 4}} {
		if got := blockBitsFor(netip.MustParsePrefix(c.pool), DefaultBlockBits); got != c.want {
			t.Errorf("%s: block bits %d, want %d", c.pool, got, c.want)
		}
	}
	for _, c := range []struct{ p, last string }{{"10.0.0.0/8", "10.255.255.255"}, {"10.0.0.4/32", "10.0.0.4"},
		{"fd00::/64", "fd00::ffff:ffff:ffff:ffff"}, {"fd00::/120", "fd00::ff"}, {"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}, {"0.0.0.0/0", "255.255.255.255"}} {
		if got := alloc.LastAddr(netip.MustParsePrefix(c.p)); got.String() != c.last {
			t.Errorf("lastAddr(%s) = %s", c.p, got)
		}
	}
	for _, s := range []string{"10.1.2.3", "fd00::1:2"} {
		a := netip.MustParseAddr(s)
		if b, err := parseHexAddr(hexAddr(a)); err != nil || b != a {
			t.Errorf("hex round trip %s: %s %v", s, b, err)
		}
	}
}

// lossy loses responses of etcd transactions after etcd applied them, as
// when a connection drops between commit and reply.
type lossy struct {
	mu   sync.Mutex
	next int  // lose this many next Txn responses
	all  bool // lose every Txn response
	lost int
	// hook, if set, runs once when a response is lost, after etcd applied
	// the transaction and before the caller sees the error.
	hook func()
}

func (l *lossy) interceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method == "/etcdserverpb.KV/Range" {
		l.mu.Lock()
		all := l.all
		l.mu.Unlock()
		if all { // reads fail too: etcd is away for this host
			return grpcstatus.Error(codes.Unavailable, "injected: no answer")
		}
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	if method != "/etcdserverpb.KV/Txn" || err != nil {
		return err
	}
	l.mu.Lock()
	lose := l.all || l.next > 0
	var hook func()
	if lose {
		l.next = max(l.next-1, 0)
		l.lost++
		hook, l.hook = l.hook, nil
	}
	l.mu.Unlock()
	if !lose {
		return nil
	}
	if hook != nil {
		hook()
	}
	return grpcstatus.Error(codes.Unavailable, "injected: response lost")
}

func (l *lossy) set(next int, all bool) {
	l.mu.Lock()
	l.next, l.all = next, all
	l.mu.Unlock()
}

// newLossyGlobal is one host whose etcd client loses Txn responses on
// demand (see lossy), retrying quickly.
func newLossyGlobal(t *testing.T, srv *etcdtest.Server, host string) (*globalSpace, *lossy) {
	t.Helper()
	l := &lossy{}
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(l.interceptor)}})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := NewGlobalSpace(t.Context(), GlobalConfig{Client: cli, HostID: host, Prefix: "/test/ipam/",
		Retry: etcd.Retry{Attempt: time.Second, Total: 5 * time.Second, MinBackoff: 5 * time.Millisecond}})
	if err != nil {
		cli.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp.(*globalSpace), l
}

func TestGlobalLostResponses(t *testing.T) {
	srv := etcdtest.Start(t)
	a, l := newLossyGlobal(t, srv, "host-a")
	b := newGlobal(t, srv, "host-b")
	ctx := t.Context()

	// Each change below is applied, its reply lost, and retried: the retry
	// must recognise it rather than apply it twice or fail.
	l.set(1, false)
	p := mustPool(t, a, "10.90.0.0/24", "")
	mustPool(t, b, "10.90.0.0/24", "")
	l.set(1, false)
	mustPool(t, a, "10.91.0.0/24", "") // a second pool, for ReleasePool below
	l.set(1, false)
	gw := mustAddr(t, a, AddrRequest{PoolID: p.ID, Gateway: true})
	l.set(1, false)
	if g := mustAddr(t, b, AddrRequest{PoolID: p.ID, Gateway: true}); g != gw {
		t.Fatalf("gateway %s, %s", g, gw)
	}
	acked := map[netip.Addr]bool{}
	for i := range 10 {
		l.set(1, false)
		x := mustAddr(t, a, AddrRequest{PoolID: p.ID, Serial: i%2 == 1})
		if acked[x] {
			t.Fatalf("%s twice", x)
		}
		acked[x] = true
	}
	l.set(1, false)
	x := mustAddr(t, a, AddrRequest{PoolID: p.ID, Address: netip.MustParseAddr("10.90.0.200")})
	acked[x] = true
	if l.lost < 14 {
		t.Fatalf("only %d responses lost", l.lost)
	}
	st := stored(t, a, "10.90.0.0/24")
	if len(st) != len(acked)+1 {
		t.Fatalf("%d stored, %d acknowledged + gateway", len(st), len(acked))
	}
	for x := range acked {
		if st[x].Host != "host-a" {
			t.Fatalf("%s not stored", x)
		}
	}
	if h := st[gw].Hosts; h["host-a"] != 1 || h["host-b"] != 1 {
		t.Fatalf("gateway holders %v, want one each", h)
	}
	pools, err := a.Pools(ctx)
	if err != nil || pools[0].ID != p.ID || !slices.Equal(pools[0].Hosts, []string{"host-a", "host-b"}) {
		t.Fatalf("pools %+v %v", pools, err)
	}
	var rec gPoolRecord
	resp, err := a.cli.Get(ctx, a.poolKey(cidrSeg(p.Pool)))
	if err != nil || json.Unmarshal(resp.Kvs[0].Value, &rec) != nil || rec.Hosts["host-a"] != 1 {
		t.Fatalf("pool holders %v %v", rec.Hosts, err)
	}

	// Every reply lost until the caller gives up: the call fails, and the
	// address written is deleted later, once etcd answers again.
	l.set(0, true)
	cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	_, err = a.RequestAddress(cctx, AddrRequest{PoolID: p.ID, Endpoint: "doomed"})
	cancel()
	wantStatus(t, err, 503, "global address space")
	l.set(0, false)
	var doomed netip.Addr
	for x, r := range stored(t, a, "10.90.0.0/24") {
		if r.Endpoint == "doomed" {
			doomed = x
		}
	}
	if !doomed.IsValid() {
		t.Fatal("the unacknowledged write is not in etcd: the test lost nothing")
	}
	time.Sleep(1100 * time.Millisecond) // settling is tried at most once a second
	y := mustAddr(t, a, AddrRequest{PoolID: p.ID})
	acked[y] = true
	if _, ok := stored(t, a, "10.90.0.0/24")[doomed]; ok && y != doomed {
		t.Fatalf("unacknowledged %s still stored", doomed)
	}

	// Releases with lost replies.
	for x := range acked {
		l.set(1, false)
		if err := a.ReleaseAddress(ctx, p.ID, x); err != nil {
			t.Fatal(err)
		}
	}
	l.set(1, false)
	if err := a.ReleaseAddress(ctx, p.ID, gw); err != nil {
		t.Fatal(err)
	}
	if h := stored(t, a, "10.90.0.0/24")[gw].Hosts; h["host-a"] != 0 || h["host-b"] != 1 {
		t.Fatalf("gateway holders after host-a's release: %v", h)
	}
	l.set(1, false)
	if err := a.ReleasePool(ctx, "global/10.91.0.0/24"); err != nil {
		t.Fatalf("release of the last holder with the reply lost: %v", err)
	}
	if n := countKeys(t, a, a.poolKey("10.91.0.0_24")); n != 0 {
		t.Fatal("pool not deleted")
	}
	l.set(1, false)
	if err := a.ReleasePool(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	pools, err = b.Pools(ctx)
	if err != nil || len(pools) != 1 || !slices.Equal(pools[0].Hosts, []string{"host-b"}) || pools[0].Allocated != 1 {
		t.Fatalf("after host-a left: %+v %v", pools, err)
	}
}

// BenchmarkGlobalAllocate measures concurrent allocation from 1 and 3
// hosts sharing one pool on one etcd member (fsync on), 8 concurrent
// requests per host. Each allocation is one etcd transaction.
func BenchmarkGlobalAllocate(b *testing.B) {
	srv := etcdtest.Start(b)
	slot := 0
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			slot++
			pool := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(slot * 4), 0, 0}), 14)
			var hosts []*globalSpace
			var poolID string
			for i := range n {
				h := newGlobal(b, srv, fmt.Sprintf("bench-%d-%d", slot, i))
				info, err := h.RequestPool(b.Context(), PoolRequest{Pool: pool})
				if err != nil {
					b.Fatal(err)
				}
				poolID = info.ID
				hosts = append(hosts, h)
			}
			var next, errs atomic.Int64
			got := make([][]netip.Addr, n*8)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for hi, h := range hosts {
				for w := range 8 {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							a, err := h.RequestAddress(b.Context(), AddrRequest{PoolID: poolID, Endpoint: "bench"})
							if err != nil {
								errs.Add(1)
								b.Error(err)
								return
							}
							got[hi*8+w] = append(got[hi*8+w], a)
						}
					})
				}
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			// Zero duplicates across hosts is part of the result, not an assumption.
			seen := map[netip.Addr]bool{}
			dups := 0
			for _, list := range got {
				for _, a := range list {
					if seen[a] {
						dups++
					}
					seen[a] = true
				}
			}
			if dups > 0 {
				b.Fatalf("%d addresses handed out twice", dups)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "allocs/s")
			b.ReportMetric(float64(dups), "duplicates")
		})
	}
}

// Preferred addresses requested by every host at once, racing with
// dynamic allocations in the hosts' blocks: each address goes to one.
func TestGlobalPreferredRacesDynamic(t *testing.T) {
	srv := etcdtest.Start(t)
	hosts := []*globalSpace{newGlobal(t, srv, "host-a"), newGlobal(t, srv, "host-b"), newGlobal(t, srv, "host-c")}
	var p PoolInfo
	for _, h := range hosts {
		p = mustPool(t, h, "10.95.0.0/24", "")
	}
	var mu sync.Mutex
	acked := map[netip.Addr]string{}
	conflicts := 0
	record := func(h *globalSpace, x netip.Addr) {
		mu.Lock()
		defer mu.Unlock()
		if prev, dup := acked[x]; dup {
			t.Errorf("%s handed out twice: %s and %s", x, prev, h.host)
		}
		acked[x] = h.host
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		for range 2 {
			wg.Go(func() {
				for range 30 {
					x, err := h.RequestAddress(t.Context(), AddrRequest{PoolID: p.ID})
					if err != nil {
						t.Error(err)
						return
					}
					record(h, x)
				}
			})
		}
		wg.Go(func() {
			for i := 2; i < 60; i += 2 { // inside the blocks the hosts fill first
				want := netip.AddrFrom4([4]byte{10, 95, 0, byte(i)})
				x, err := h.RequestAddress(t.Context(), AddrRequest{PoolID: p.ID, Address: want, Endpoint: "pinned"})
				if err != nil {
					if !errors.Is(err, alloc.ErrInUse) || plugin.StatusOf(err) != 409 {
						t.Errorf("%s: %v", want, err)
					}
					mu.Lock()
					conflicts++
					mu.Unlock()
					continue
				}
				if x != want {
					t.Errorf("asked %s, got %s", want, x)
				}
				record(h, x)
			}
		})
	}
	wg.Wait()
	st := stored(t, hosts[0], "10.95.0.0/24")
	if len(st) != len(acked) {
		t.Fatalf("%d stored, %d acknowledged", len(st), len(acked))
	}
	for x, h := range acked {
		if st[x].Host != h {
			t.Fatalf("%s stored for %s, handed to %s", x, st[x].Host, h)
		}
	}
	if len(acked) != 180+87-conflicts {
		t.Fatalf("%d acknowledged, %d conflicts", len(acked), conflicts)
	}
	t.Logf("%d acknowledged, %d preferred requests refused", len(acked), conflicts)
}
