package driver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

type fixture struct {
	dir    string
	drv    *Driver
	c      *ipam.Client
	admin  *AdminClient
	stop   func()
	routes []netip.Prefix
}

func (f *fixture) open(t *testing.T) {
	t.Helper()
	d, err := New(Config{StateDir: f.dir, HostID: "host-a",
		DefaultPools: []alloc.PoolSpec{{Base: netip.MustParsePrefix("10.10.0.0/16"), Size: 24}, {Base: netip.MustParsePrefix("fd00:1::/48"), Size: 64}},
		HostRoutes:   func() ([]netip.Prefix, error) { return f.routes, nil }})
	if err != nil {
		t.Fatal(err)
	}
	r, err := plugintest.Start("ipamtest", ipam.NewHandler(d), d.Admin())
	if err != nil {
		t.Fatal(err)
	}
	f.drv, f.c, f.admin = d, ipam.NewClient(r.Client), NewAdminClient(r.Client)
	f.stop = func() { r.Stop(); d.Close() }
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{dir: t.TempDir()}
	f.open(t)
	t.Cleanup(func() { f.stop() })
	return f
}

func (f *fixture) restart(t *testing.T) {
	f.stop()
	f.open(t)
}

func (f *fixture) pool(t *testing.T, space, pool, sub string, v6 bool) *ipam.RequestPoolResponse {
	t.Helper()
	r, err := f.c.RequestPool(context.Background(), &ipam.RequestPoolRequest{AddressSpace: space, Pool: pool, SubPool: sub, V6: v6})
	if err != nil {
		t.Fatalf("RequestPool %s %s: %v", pool, sub, err)
	}
	return r
}

func (f *fixture) addr(poolID, want string, opts map[string]string) (string, error) {
	r, err := f.c.RequestAddress(context.Background(), &ipam.RequestAddressRequest{PoolID: poolID, Address: want, Options: opts})
	if err != nil {
		return "", err
	}
	return r.Address, nil
}

func status(err error) int {
	var se *plugin.StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

func TestCapabilitiesAndSpaces(t *testing.T) {
	f := newFixture(t)
	caps, err := f.c.GetCapabilities(context.Background())
	if err != nil || caps.RequiresRequestReplay || caps.RequiresMACAddress {
		t.Fatalf("%+v %v", caps, err)
	}
	sp, err := f.c.GetDefaultAddressSpaces(context.Background())
	if err != nil || sp.LocalDefaultAddressSpace != "local" || sp.GlobalDefaultAddressSpace != "global" {
		t.Fatalf("%+v %v", sp, err)
	}
	// Without etcd, the global space is a clear error, never a local fallback.
	_, err = f.c.RequestPool(context.Background(), &ipam.RequestPoolRequest{AddressSpace: "global", Pool: "10.99.0.0/24"})
	if status(err) != 501 || !strings.Contains(err.Error(), "--etcd-endpoints") {
		t.Fatalf("global without etcd: %v", err)
	}
	if _, err := f.c.RequestPool(context.Background(), &ipam.RequestPoolRequest{AddressSpace: "moon"}); status(err) != 400 {
		t.Fatalf("unknown space: %v", err)
	}
}

func TestExplicitPoolsAndAddresses(t *testing.T) {
	f := newFixture(t)
	p := f.pool(t, "local", "192.168.50.0/29", "", false)
	if p.PoolID != "local/192.168.50.0/29" || p.Pool != "192.168.50.0/29" {
		t.Fatalf("%+v", p)
	}
	// Overlaps name the existing pool.
	_, err := f.c.RequestPool(context.Background(), &ipam.RequestPoolRequest{AddressSpace: "local", Pool: "192.168.50.0/24"})
	if status(err) != 409 || !strings.Contains(err.Error(), "overlaps pool 192.168.50.0/29") {
		t.Fatalf("overlap: %v", err)
	}
	gw, err := f.addr(p.PoolID, "", map[string]string{ipam.OptRequestAddressType: ipam.Gateway})
	if err != nil || gw != "192.168.50.1/29" {
		t.Fatalf("gateway: %q %v", gw, err)
	}
	a, _ := f.addr(p.PoolID, "", map[string]string{ipam.OptEndpointName: "web"})
	b, _ := f.addr(p.PoolID, "192.168.50.5", map[string]string{ipam.OptEndpointName: "db"})
	if a != "192.168.50.2/29" || b != "192.168.50.5/29" {
		t.Fatalf("a %s b %s", a, b)
	}
	// Releasing an address of the pool that was never allocated (docker
	// does it for gateways it took from Data) is harmless, and frees nothing.
	if err := f.c.ReleaseAddress(context.Background(), &ipam.ReleaseAddressRequest{PoolID: p.PoolID, Address: "192.168.50.6"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr, msg string
		status    int
	}{
		{"192.168.50.5", "already in use", 409},
		{"192.168.50.0", "reserved", 400},
		{"192.168.50.7", "reserved", 400},
		{"10.0.0.1", "out of pool range", 400},
	} {
		if _, err := f.addr(p.PoolID, c.addr, nil); status(err) != c.status || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %d %q", c.addr, err, c.status, c.msg)
		}
	}
	f.addr(p.PoolID, "", nil) // .3
	f.addr(p.PoolID, "", nil) // .4
	f.addr(p.PoolID, "", nil) // .6
	if _, err := f.addr(p.PoolID, "", nil); status(err) != 507 || !strings.Contains(err.Error(), "no available addresses") {
		t.Fatalf("exhausted: %v", err)
	}
	// So is releasing an address outside the pool.
	if err := f.c.ReleaseAddress(context.Background(), &ipam.ReleaseAddressRequest{PoolID: p.PoolID, Address: "192.168.50.200"}); err != nil {
		t.Fatal(err)
	}
	show, err := f.admin.Pool(context.Background(), "192.168.50.0/29")
	if err != nil || len(show.Addresses) != 6 || show.Pool.Gateway.String() != "192.168.50.1" {
		t.Fatalf("show: %+v %v", show, err)
	}
	holders := map[string]string{}
	for _, a := range show.Addresses {
		holders[a.Address.String()] = a.Endpoint
		if a.Host != "host-a" {
			t.Errorf("host %q", a.Host)
		}
	}
	if holders["192.168.50.2"] != "web" || holders["192.168.50.5"] != "db" {
		t.Fatalf("holders: %v", holders)
	}
	if err := f.c.ReleasePool(context.Background(), &ipam.ReleasePoolRequest{PoolID: p.PoolID}); err != nil {
		t.Fatal(err)
	}
	f.pool(t, "local", "192.168.50.0/24", "", false) // free again
}

func TestSubPoolSerialAndIPv6(t *testing.T) {
	f := newFixture(t)
	p := f.pool(t, "local", "172.30.0.0/16", "172.30.5.0/24", false)
	if p.PoolID != "local/172.30.0.0/16/172.30.5.0/24" {
		t.Fatalf("%s", p.PoolID)
	}
	// Like docker, only the pool's own network address is reserved, not the sub-pool's.
	if a, _ := f.addr(p.PoolID, "", nil); a != "172.30.5.0/16" {
		t.Fatalf("sub-pool first: %s", a)
	}
	// Preferred addresses may lie outside the sub-pool but inside the pool (--ip, aux).
	if a, err := f.addr(p.PoolID, "172.30.9.9", nil); err != nil || a != "172.30.9.9/16" {
		t.Fatalf("outside sub-pool: %s %v", a, err)
	}
	serial := map[string]string{ipam.OptSerial: "true"}
	a1, _ := f.addr(p.PoolID, "", serial)
	f.c.ReleaseAddress(context.Background(), &ipam.ReleaseAddressRequest{PoolID: p.PoolID, Address: strings.Split(a1, "/")[0]})
	a2, _ := f.addr(p.PoolID, "", serial)
	if a1 != "172.30.5.1/16" || a2 != "172.30.5.2/16" {
		t.Fatalf("serial: %s then %s", a1, a2)
	}
	// IPv6: an explicit /64 and a dynamic one.
	v6 := f.pool(t, "local", "2001:db8::/64", "", true)
	if a, _ := f.addr(v6.PoolID, "", nil); a != "2001:db8::1/64" {
		t.Fatalf("v6: %s", a)
	}
	d6 := f.pool(t, "local", "", "", true)
	if d6.Pool != "fd00:1::/64" {
		t.Fatalf("dynamic v6: %s", d6.Pool)
	}
	if _, err := f.c.RequestPool(context.Background(), &ipam.RequestPoolRequest{AddressSpace: "local", Pool: "10.0.0.0/8", V6: true}); status(err) != 400 {
		t.Fatalf("family mismatch: %v", err)
	}
}

func TestDynamicPoolsSkipHostRoutesAndExistingPools(t *testing.T) {
	f := newFixture(t)
	f.routes = []netip.Prefix{netip.MustParsePrefix("10.10.0.0/23"), netip.MustParsePrefix("0.0.0.0/0")}
	f.pool(t, "local", "10.10.2.0/24", "", false)
	got := f.pool(t, "local", "", "", false)
	if got.Pool != "10.10.3.0/24" {
		t.Fatalf("dynamic pool %s, want 10.10.3.0/24 (routes cover .0-.1, .2 is taken)", got.Pool)
	}
}

// An unspecified address asks for a dynamic pool, as in docker's default
// IPAM: 0.0.0.0/0 and ::/0 of the default size, 0.0.0.0/N of size N. They
// used to be refused.
func TestUnspecifiedPoolIsDynamic(t *testing.T) {
	f := newFixture(t)
	f.routes = []netip.Prefix{netip.MustParsePrefix("10.10.0.0/24")}
	ctx := context.Background()
	for _, c := range []struct {
		pool string
		v6   bool
		want string
	}{
		{"0.0.0.0/0", false, "10.10.1.0/24"}, // skips the host's routes
		{"0.0.0.0/0", false, "10.10.2.0/24"}, // and the pools taken
		{"0.0.0.0/26", false, "10.10.3.0/26"},
		{"0.0.0.0/20", false, "10.10.16.0/20"},
		{"::/0", true, "fd00:1::/64"},
		{"::/56", true, "fd00:1:0:100::/56"},
	} {
		p := f.pool(t, "local", c.pool, "", c.v6)
		if p.Pool != c.want || p.PoolID != "local/"+c.want {
			t.Fatalf("%s: %+v, want %s", c.pool, p, c.want)
		}
	}
	pools, err := f.drv.Pools(ctx)
	if err != nil || len(pools) != 6 || slices.ContainsFunc(pools, func(p PoolInfo) bool { return !p.Dynamic }) {
		t.Fatalf("pools %+v %v", pools, err)
	}
	for _, c := range []struct {
		pool, sub string
		v6        bool
		want      string
	}{
		{"0.0.0.0/8", "", false, "no IPv4 default pool is large enough for a /8"},
		{"::/0", "", false, "not an IPv4 pool"},
		{"0.0.0.0/0", "", true, "not an IPv6 pool"},
		{"0.0.0.0/0", "10.10.9.0/24", false, "a sub-pool needs a pool"},
	} {
		_, err := f.c.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: "local", Pool: c.pool, SubPool: c.sub, V6: c.v6})
		if status(err) != 400 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s v6=%v: %v, want 400 %q", c.pool, c.sub, c.v6, err, c.want)
		}
	}
}

// Default pools are per address family, as dockerd's default-address-pools
// are: IPv4 pools alone replace docker's IPv4 defaults but keep the ULA
// /48, so that --ipv6 without --subnet works. Giving any pool used to drop
// the ULA.
func TestDefaultPoolsPerFamily(t *testing.T) {
	ctx := context.Background()
	ula := alloc.DeriveULAPool("h").Base
	open := func(pools []alloc.PoolSpec) *Driver {
		t.Helper()
		d, err := New(Config{StateDir: t.TempDir(), HostID: "h", DefaultPools: pools, HostRoutes: noRoutes})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	dyn := func(d *Driver, v6 bool) (string, error) {
		r, err := d.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: LocalSpace, V6: v6})
		if err != nil {
			return "", err
		}
		return r.Pool, nil
	}
	v4 := []alloc.PoolSpec{{Base: netip.MustParsePrefix("10.66.0.0/16"), Size: 24}}
	d := open(v4)
	if p, err := dyn(d, false); err != nil || p != "10.66.0.0/24" {
		t.Fatalf("IPv4 from the pools given: %s %v", p, err)
	}
	if p, err := dyn(d, true); err != nil || p != netip.PrefixFrom(ula.Addr(), 64).String() {
		t.Fatalf("IPv6 with only IPv4 pools given: %s %v, want the first /64 of the ULA %s", p, err, ula)
	}
	if len(v4) != 1 || cap(v4) != 1 {
		t.Fatalf("the caller's pools were changed: %v", v4)
	}
	// IPv4-mapped pools are neither: refused rather than handed out as IPv6.
	_, err := New(Config{StateDir: t.TempDir(), HostID: "h", HostRoutes: noRoutes,
		DefaultPools: []alloc.PoolSpec{{Base: netip.MustParsePrefix("::ffff:10.0.0.0/104"), Size: 120}}})
	if err == nil || !strings.Contains(err.Error(), "IPv4-mapped") {
		t.Fatalf("an IPv4-mapped default pool: %v", err)
	}
	// An IPv6 pool given replaces the ULA; and, as in dockerd, the pools
	// given replace docker's IPv4 defaults too.
	d = open([]alloc.PoolSpec{{Base: netip.MustParsePrefix("fd42::/48"), Size: 64}})
	if p, err := dyn(d, true); err != nil || p != "fd42::/64" {
		t.Fatalf("IPv6 from the pool given: %s %v", p, err)
	}
	if p, err := dyn(d, false); plugin.StatusOf(err) != 507 || !strings.Contains(fmt.Sprint(err), "no IPv4 default pools") {
		t.Fatalf("IPv4 with only an IPv6 pool given: %s %v, want 507 (no IPv4 default pools)", p, err)
	}
	// None given: docker's IPv4 defaults and the ULA.
	d = open(nil)
	if p, err := dyn(d, false); err != nil || p != "172.17.0.0/16" {
		t.Fatalf("IPv4 default: %s %v", p, err)
	}
	if p, err := dyn(d, true); err != nil || p != netip.PrefixFrom(ula.Addr(), 64).String() {
		t.Fatalf("IPv6 default: %s %v", p, err)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	f := newFixture(t)
	p := f.pool(t, "local", "10.20.0.0/24", "", false)
	dyn := f.pool(t, "local", "", "", false)
	var held []string
	for range 5 {
		a, err := f.addr(p.PoolID, "", map[string]string{ipam.OptEndpointName: "ep"})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, a)
	}
	f.c.ReleaseAddress(context.Background(), &ipam.ReleaseAddressRequest{PoolID: p.PoolID, Address: "10.20.0.3"})
	f.restart(t)
	// The same pools exist, and new allocations never repeat a held address.
	if _, err := f.c.RequestPool(context.Background(), &ipam.RequestPoolRequest{AddressSpace: "local", Pool: "10.20.0.0/24"}); status(err) != 409 {
		t.Fatalf("pool forgotten after restart: %v", err)
	}
	if d2 := f.pool(t, "local", "", "", false); d2.Pool == dyn.Pool {
		t.Fatalf("dynamic pool %s handed out twice", d2.Pool)
	}
	a, _ := f.addr(p.PoolID, "", nil)
	if a != "10.20.0.3/24" {
		t.Fatalf("after restart first free is %s, want the released 10.20.0.3", a)
	}
	b, _ := f.addr(p.PoolID, "", nil)
	for _, h := range held {
		if b == h {
			t.Fatalf("%s handed out twice", b)
		}
	}
	ls, err := f.admin.Pools(context.Background())
	if err != nil || len(ls.Pools) != 3 || ls.HostID != "host-a" {
		t.Fatalf("pools: %+v %v", ls, err)
	}
}

func TestSerialAsPoolOption(t *testing.T) {
	f := newFixture(t)
	p, err := f.c.RequestPool(context.Background(), &ipam.RequestPoolRequest{AddressSpace: "local", Pool: "10.30.0.0/24",
		Options: map[string]string{ipam.OptSerial: "true"}})
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := f.addr(p.PoolID, "", nil)
	f.c.ReleaseAddress(context.Background(), &ipam.ReleaseAddressRequest{PoolID: p.PoolID, Address: strings.Split(a1, "/")[0]})
	a2, _ := f.addr(p.PoolID, "", nil)
	if a1 != "10.30.0.1/24" || a2 != "10.30.0.2/24" {
		t.Fatalf("serial pool option ignored: %s then %s", a1, a2)
	}
}

// consistent checks that a local pool's allocator and its durable records
// hold the same addresses.
func consistent(t *testing.T, d *Driver, poolID string) {
	t.Helper()
	d.local.mu.Lock()
	p, ok := d.local.pools[poolID]
	var mem []string
	if ok {
		for a := range p.a.All() {
			mem = append(mem, a.String())
		}
	}
	d.local.mu.Unlock()
	if !ok {
		return
	}
	infos, err := d.local.Addresses(context.Background(), poolID)
	if err != nil {
		t.Fatal(err)
	}
	var disk []string
	for _, a := range infos {
		disk = append(disk, a.Address.String())
	}
	if strings.Join(mem, ",") != strings.Join(disk, ",") {
		t.Fatalf("pool %s: memory %v, disk %v", poolID, mem, disk)
	}
}

// A duplicate release racing with the allocation that reuses the address
// must not free it in memory while it is on disk (and acknowledged).
func TestReleaseRacingReallocation(t *testing.T) {
	d, err := New(Config{StateDir: t.TempDir(), HostID: "h", HostRoutes: func() ([]netip.Prefix, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	info, err := d.local.RequestPool(ctx, PoolRequest{Pool: netip.MustParsePrefix("10.40.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	x := netip.MustParseAddr("10.40.0.1")
	for range 500 {
		if _, err := d.local.RequestAddress(ctx, AddrRequest{PoolID: info.ID}); err != nil {
			t.Fatal(err)
		}
		if err := d.local.ReleaseAddress(ctx, info.ID, x); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { d.local.RequestAddress(ctx, AddrRequest{PoolID: info.ID}) })
		for range 4 { // duplicate releases, e.g. a client retrying
			wg.Go(func() { d.local.ReleaseAddress(ctx, info.ID, x) })
		}
		wg.Wait()
		consistent(t, d, info.ID)
		d.local.ReleaseAddress(ctx, info.ID, x)
	}
}

// Pool IDs repeat: an allocation queued for a released pool must not land
// in its successor with the same ID.
func TestAllocationRacingPoolRecreation(t *testing.T) {
	d, err := New(Config{StateDir: t.TempDir(), HostID: "h", HostRoutes: func() ([]netip.Prefix, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	cidr := netip.MustParsePrefix("10.41.0.0/24")
	for range 500 {
		p1, err := d.local.RequestPool(ctx, PoolRequest{Pool: cidr})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { d.local.RequestAddress(ctx, AddrRequest{PoolID: p1.ID}) })
		wg.Go(func() {
			if err := d.local.ReleasePool(ctx, p1.ID); err == nil {
				d.local.RequestPool(ctx, PoolRequest{Pool: cidr})
			}
		})
		wg.Wait()
		consistent(t, d, p1.ID)
		d.local.ReleasePool(ctx, p1.ID)
	}
}

func TestGatewayRequestIsIdempotent(t *testing.T) {
	f := newFixture(t)
	p := f.pool(t, "local", "10.31.0.0/24", "", false)
	gwOpts := map[string]string{ipam.OptRequestAddressType: ipam.Gateway}
	g1, err1 := f.addr(p.PoolID, "", gwOpts)
	g2, err2 := f.addr(p.PoolID, "", gwOpts)
	if err1 != nil || err2 != nil || g1 != "10.31.0.1/24" || g2 != g1 {
		t.Fatalf("gateways %s %s (%v %v)", g1, g2, err1, err2)
	}
	show, _ := f.admin.Pool(context.Background(), p.PoolID)
	if len(show.Addresses) != 1 {
		t.Fatalf("two gateway records: %+v", show.Addresses)
	}
	// Released, the next gateway request allocates again.
	f.c.ReleaseAddress(context.Background(), &ipam.ReleaseAddressRequest{PoolID: p.PoolID, Address: "10.31.0.1"})
	if g3, _ := f.addr(p.PoolID, "", gwOpts); g3 != "10.31.0.1/24" {
		t.Fatalf("gateway after release: %s", g3)
	}
}
