package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockplug/dockplug/ipam/driver"
)

// End-to-end tests of the dockplug-ipam plugin served by the real binary
// to the private dockerd, as the IPAM driver of networks of the built-in
// bridge driver (`docker network create --ipam-driver NAME`). Addresses are
// checked inside the containers (`ip addr show eth0`) and in the plugin's
// own records (`dockplug ipam ls|show --json`). Gotcha numbers (G12...)
// refer to shared/reference/docker-plugin-protocol.md, section 9.
//
// dockerd keeps every IPAM driver it has used, and at its start it looks up
// the IPAM driver of every stored network (G9): a network left on a stopped
// plugin would stall the next daemon restart for about 15 s (G3). So every
// test removes its networks while its plugin runs, and teardown checks that
// the plugin holds no pool any more before stopping it.
//
// The endpoint name: `ipam show` records the name the daemon sends in
// RequestAddress (Options["com.docker.network.endpoint.name"], the
// container name). moby only sends it since moby/moby#50586 (2025); dockerd
// 20.10 sends no name at all, so there the plugin records none. The tests
// learn which from the first address they see and then require it of every
// address (expectedHeld).

// TestIpamDynamicPool: without --subnet, the daemon asks for any pool; the
// plugin picks a free one (not overlapping host routes), the daemon shows it
// and the gateway the plugin gave in `docker network inspect`, and `ipam ls`
// lists it. A container gets the next address; `docker network rm` releases
// the pool.
func TestIpamDynamicPool(t *testing.T) {
	e := setupIpam(t)
	n := e.netName("dyn")
	e.netCreate(n)

	info := e.netInspect(n)
	if info.IPAM.Driver != e.p.Name {
		t.Errorf("IPAM.Driver %q, want %q", info.IPAM.Driver, e.p.Name)
	}
	if len(info.IPAM.Config) != 1 {
		t.Fatalf("IPAM.Config %+v, want one entry", info.IPAM.Config)
	}
	subnet, err := netip.ParsePrefix(info.IPAM.Config[0].Subnet)
	if err != nil {
		t.Fatalf("IPAM.Config[0].Subnet %q: %v", info.IPAM.Config[0].Subnet, err)
	}
	gw, err := netip.ParseAddr(info.IPAM.Config[0].Gateway)
	if err != nil {
		t.Fatalf("IPAM.Config[0].Gateway %q: %v", info.IPAM.Config[0].Gateway, err)
	}
	if !subnet.Addr().Is4() || subnet != subnet.Masked() {
		t.Errorf("dynamic subnet %s is not a masked IPv4 prefix", subnet)
	}
	routes, err := driver.HostRoutes()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		// The bridge of this very network now has a route for subnet.
		if r != subnet && r.Overlaps(subnet) {
			t.Errorf("dynamic subnet %s overlaps host route %s", subnet, r)
		}
	}
	if want := nth(subnet, 1); gw != want {
		t.Errorf("gateway %s, want the first address %s", gw, want)
	}

	ls := e.pools()
	if ls.HostID == "" {
		t.Error("ipam ls: empty hostID")
	}
	if len(ls.Pools) != 1 {
		t.Fatalf("ipam ls: pools %+v, want one", ls.Pools)
	}
	p := ls.Pools[0]
	if want := "local/" + subnet.String(); p.ID != want || p.Space != driver.LocalSpace || p.Pool != subnet || !p.Dynamic ||
		p.Gateway != gw || p.Allocated != 1 || p.SubPool.IsValid() {
		t.Errorf("ipam ls: pool %+v, want ID %s, local, dynamic, gateway %s, 1 allocated", p, want, gw)
	}

	c := e.netName("c1")
	e.runC(c, n)
	a := e.addr4(c)
	if a.Bits() != subnet.Bits() || !subnet.Contains(a.Addr()) || a.Addr() != nth(subnet, 2) {
		t.Errorf("container address %s, want %s/%d", a, nth(subnet, 2), subnet.Bits())
	}
	e.waitHeld(p.ID, map[netip.Addr]string{a.Addr(): c})
	if sh := e.show(p.ID); sh.Pool.Allocated != 2 {
		t.Errorf("ipam show: %d allocated, want 2", sh.Pool.Allocated)
	}

	e.docker("rm", "-f", c)
	e.waitHeld(p.ID, map[netip.Addr]string{})
	e.docker("network", "rm", n)
	if left := e.pools().Pools; len(left) != 0 {
		t.Errorf("after network rm: pools %+v, want none", left)
	}
}

// TestIpamSubnetGatewayIP: --subnet and --gateway are what the daemon and
// the plugin record, the container routes through that gateway, --ip gets
// exactly that address, other containers the first free ones; `ipam show`
// (by pool ID or CIDR) lists each address with the endpoint name dockerd
// sends (the container name; none from dockerd 20.10), the host ID of
// `ipam ls`, and the gateway once.
func TestIpamSubnetGatewayIP(t *testing.T) {
	e := setupIpam(t)
	s := freeSubnet(t)
	gw := nth(s, 254)
	n := e.netName("net")
	e.netCreate(n, "--subnet", s.String(), "--gateway", gw.String())

	info := e.netInspect(n)
	if len(info.IPAM.Config) != 1 || info.IPAM.Config[0].Subnet != s.String() || info.IPAM.Config[0].Gateway != gw.String() {
		t.Errorf("IPAM.Config %+v, want subnet %s gateway %s", info.IPAM.Config, s, gw)
	}
	ls := e.pools()
	if len(ls.Pools) != 1 {
		t.Fatalf("ipam ls: pools %+v, want one", ls.Pools)
	}
	p := ls.Pools[0]
	if p.ID != "local/"+s.String() || p.Pool != s || p.Dynamic || p.Gateway != gw || p.Allocated != 1 {
		t.Errorf("ipam ls: pool %+v, want local/%s, not dynamic, gateway %s, 1 allocated", p, s, gw)
	}

	fixed, any1, any2 := e.netName("fixed"), e.netName("any1"), e.netName("any2")
	e.runC(fixed, n, "--ip", nth(s, 100).String())
	e.runC(any1, n)
	e.runC(any2, n)
	want := map[string]netip.Prefix{
		fixed: netip.PrefixFrom(nth(s, 100), 24),
		any1:  netip.PrefixFrom(nth(s, 1), 24), // .254 is the gateway, so .1 is free
		any2:  netip.PrefixFrom(nth(s, 2), 24),
	}
	for c, w := range want {
		if got := e.addr4(c); got != w {
			t.Errorf("container %s: eth0 has %s, want %s", c, got, w)
		}
	}
	if out := e.docker("exec", any1, "ip", "route"); !strings.Contains(out, "default via "+gw.String()+" dev eth0") {
		t.Errorf("container %s routes through another gateway than %s:\n%s", any1, gw, out)
	}

	for _, ref := range []string{p.ID, s.String()} {
		sh := e.show(ref)
		if sh.Pool.ID != p.ID {
			t.Errorf("ipam show %s: pool %s", ref, sh.Pool.ID)
		}
		var gws []netip.Addr
		for _, a := range sh.Addresses {
			if a.Host != ls.HostID {
				t.Errorf("ipam show %s: %s held by host %q, want %q", ref, a.Address, a.Host, ls.HostID)
			}
			if a.At.IsZero() || time.Since(a.At) > 10*time.Minute {
				t.Errorf("ipam show %s: %s allocated at %s", ref, a.Address, a.At)
			}
			if a.Gateway {
				gws = append(gws, a.Address)
			}
		}
		if !slices.Equal(gws, []netip.Addr{gw}) {
			t.Errorf("ipam show %s: gateway entries %v, want %s", ref, gws, gw)
		}
		names := map[netip.Addr]string{}
		for c, w := range want {
			names[w.Addr()] = c
		}
		got := heldAddrs(sh)
		if exp := expectedHeld(names); !maps.Equal(got, exp) {
			t.Errorf("ipam show %s: %v, want %v", ref, got, exp)
		}
	}

	// Releasing and reusing: the freed .1 is the first free address again.
	e.docker("rm", "-f", any1)
	any3 := e.netName("any3")
	e.runC(any3, n)
	if got := e.addr4(any3); got.Addr() != nth(s, 1) {
		t.Errorf("after rm of %s, a new container got %s, want %s", any1, got, nth(s, 1))
	}

	e.docker("rm", "-f", fixed, any2, any3)
	e.waitHeld(p.ID, map[netip.Addr]string{})
	e.docker("network", "rm", n)
	if left := e.pools().Pools; len(left) != 0 {
		t.Errorf("after network rm: pools %+v, want none", left)
	}
}

// TestIpamIPRangeAux: --ip-range becomes the SubPool (pool ID
// local/<subnet>/<range>); containers get addresses from the range only;
// each --aux-address is reserved in the plugin (G13: the daemon asks for
// each, and any error would fail the network) and never handed to a
// container, even when the range runs out, which fails the container with
// the plugin's message (G13: no fall-through).
func TestIpamIPRangeAux(t *testing.T) {
	e := setupIpam(t)
	s := freeSubnet(t)
	rng := netip.PrefixFrom(nth(s, 16), 30) // .16-.19
	gw, auxIn, auxOut := nth(s, 1), nth(s, 17), nth(s, 200)
	n := e.netName("rng")
	e.netCreate(n, "--subnet", s.String(), "--ip-range", rng.String(), "--gateway", gw.String(),
		"--aux-address", "in="+auxIn.String(), "--aux-address", "out="+auxOut.String())

	info := e.netInspect(n)
	if len(info.IPAM.Config) != 1 {
		t.Fatalf("IPAM.Config %+v", info.IPAM.Config)
	}
	cfg := info.IPAM.Config[0]
	if cfg.Subnet != s.String() || cfg.IPRange != rng.String() || cfg.Gateway != gw.String() ||
		!maps.Equal(cfg.AuxAddress, map[string]string{"in": auxIn.String(), "out": auxOut.String()}) {
		t.Errorf("IPAM.Config %+v", cfg)
	}
	ls := e.pools()
	if len(ls.Pools) != 1 {
		t.Fatalf("ipam ls: pools %+v, want one", ls.Pools)
	}
	p := ls.Pools[0]
	if want := "local/" + s.String() + "/" + rng.String(); p.ID != want || p.Pool != s || p.SubPool != rng || p.Gateway != gw || p.Allocated != 3 {
		t.Errorf("ipam ls: pool %+v, want %s, sub-pool %s, gateway %s, 3 allocated", p, want, rng, gw)
	}
	sh := e.show(p.ID)
	reserved := map[netip.Addr]bool{}
	for _, a := range sh.Addresses {
		reserved[a.Address] = a.Gateway
		if !a.Gateway && a.Endpoint != "" {
			t.Errorf("ipam show: aux address %s has endpoint %q", a.Address, a.Endpoint)
		}
	}
	if !maps.Equal(reserved, map[netip.Addr]bool{gw: true, auxIn: false, auxOut: false}) {
		t.Errorf("ipam show: %+v, want gateway %s and aux %s, %s", sh.Addresses, gw, auxIn, auxOut)
	}

	// The range holds .16 .18 .19 for containers (.17 is aux).
	var names []string
	got := map[netip.Addr]string{auxIn: "", auxOut: ""}
	for i := range 3 {
		c := e.netName(fmt.Sprintf("c%d", i))
		names = append(names, c)
		e.runC(c, n)
		a := e.addr4(c)
		if !rng.Contains(a.Addr()) || a.Bits() != s.Bits() {
			t.Errorf("container %s: %s, want an address of %s with /%d", c, a, rng, s.Bits())
		}
		got[a.Addr()] = c
	}
	if want := []netip.Addr{nth(s, 16), auxIn, nth(s, 18), nth(s, 19), auxOut}; !slices.Equal(slices.SortedFunc(maps.Keys(got), netip.Addr.Compare), want) {
		t.Errorf("containers got %v, want %v", got, want)
	}
	e.waitHeld(p.ID, got)

	full := e.netName("full")
	_, err := e.dockerErr(e.runArgs(full, n)...)
	if err == nil {
		t.Fatalf("a fourth container started on the full range %s: %s", rng, e.addr4(full))
	}
	if msg := err.Error(); !strings.Contains(msg, "no available addresses in pool") || !strings.Contains(msg, rng.String()) {
		t.Errorf("full range: error does not say the range %s is exhausted: %v", rng, err)
	}
	// --ip on an aux address: in use.
	_, err = e.dockerErr(e.runArgs(e.netName("onaux"), n, "--ip", auxIn.String())...)
	if err == nil || !strings.Contains(err.Error(), "address already in use: "+auxIn.String()) {
		t.Errorf("--ip %s (aux): want 'address already in use: %s', got %v", auxIn, auxIn, err)
	}
	// --ip outside the range but inside the subnet works, as with docker's
	// own IPAM.
	out := e.netName("outside")
	e.runC(out, n, "--ip", nth(s, 100).String())
	if a := e.addr4(out); a.Addr() != nth(s, 100) {
		t.Errorf("--ip %s outside the range: container has %s", nth(s, 100), a)
	}
	got[nth(s, 100)] = out
	e.waitHeld(p.ID, got)

	e.docker(append(append([]string{"rm", "-f"}, names...), out, full, e.netName("onaux"))...)
	e.waitHeld(p.ID, map[netip.Addr]string{auxIn: "", auxOut: ""})
	// Gateway and aux addresses are released with the network.
	e.docker("network", "rm", n)
	if left := e.pools().Pools; len(left) != 0 {
		t.Errorf("after network rm: pools %+v, want none", left)
	}
}

// TestIpamIPv6: with --ipv6 and an IPv4 and an IPv6 --subnet, the daemon
// asks for two pools (V6 for the second); the container gets the first
// free address of each, or the --ip6 it asked for, and has them on eth0.
func TestIpamIPv6(t *testing.T) {
	need(t)
	if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6"); err != nil || strings.TrimSpace(string(b)) != "0" {
		t.Skipf("IPv6 is disabled on this host (%q, %v)", b, err)
	}
	e := setupIpam(t)
	s4, s6 := freeSubnet(t), freeSubnet6(t)
	n := e.netName("v6")
	e.netCreate(n, "--ipv6", "--subnet", s4.String(), "--subnet", s6.String())

	info := e.netInspect(n)
	if !info.EnableIPv6 {
		t.Error("EnableIPv6 false")
	}
	// dockerd 20.10 shows the gateway only when the user gave one; later
	// versions show the one the plugin allocated.
	gws := map[string]string{}
	for _, c := range info.IPAM.Config {
		gws[c.Subnet] = c.Gateway
	}
	for _, sn := range []netip.Prefix{s4, s6} {
		if g, ok := gws[sn.String()]; !ok || (g != "" && g != nth(sn, 1).String()) {
			t.Errorf("IPAM.Config subnets/gateways %v, want %s with gateway %s", gws, sn, nth(sn, 1))
		}
	}
	if len(gws) != 2 {
		t.Errorf("IPAM.Config subnets/gateways %v, want two", gws)
	}
	p4, p6 := e.poolByPrefix(s4), e.poolByPrefix(s6)
	if p4 == nil || p6 == nil {
		t.Fatalf("ipam ls: %+v, want pools %s and %s", e.pools().Pools, s4, s6)
	}
	if p6.ID != "local/"+s6.String() || p6.Gateway != nth(s6, 1) || p6.Allocated != 1 {
		t.Errorf("ipam ls: IPv6 pool %+v", p6)
	}

	a, b := e.netName("a"), e.netName("b")
	e.runC(a, n)
	fixed6 := nth(s6, 0xbeef)
	e.runC(b, n, "--ip6", fixed6.String())
	for c, w := range map[string][2]netip.Addr{a: {nth(s4, 2), nth(s6, 2)}, b: {nth(s4, 3), fixed6}} {
		if got := e.addr4(c); got != netip.PrefixFrom(w[0], 24) {
			t.Errorf("container %s: IPv4 %s, want %s/24", c, got, w[0])
		}
		if got := e.ifAddrs(c, "-6"); !slices.Equal(got, []netip.Prefix{netip.PrefixFrom(w[1], 64)}) {
			t.Errorf("container %s: global IPv6 addresses %v, want %s/64", c, got, w[1])
		}
	}
	if out := e.docker("exec", a, "ip", "-6", "route"); !strings.Contains(out, "default via "+nth(s6, 1).String()) {
		t.Errorf("container %s: no IPv6 default route via %s:\n%s", a, nth(s6, 1), out)
	}
	e.waitHeld(p6.ID, map[netip.Addr]string{nth(s6, 2): a, fixed6: b})
	e.waitHeld(p4.ID, map[netip.Addr]string{nth(s4, 2): a, nth(s4, 3): b})

	e.docker("rm", "-f", a, b)
	e.waitHeld(p6.ID, map[netip.Addr]string{})
	e.docker("network", "rm", n)
	if left := e.pools().Pools; len(left) != 0 {
		t.Errorf("after network rm: pools %+v, want none", left)
	}

	// --ipv6 without subnets: two dynamic pools, the IPv6 one a /64 of the
	// plugin's ULA /48 (derived from its host ID, as dockerd derives its own).
	dyn := e.netName("dyn6")
	e.netCreate(dyn, "--ipv6")
	var dyn4, dyn6 netip.Prefix
	for _, c := range e.netInspect(dyn).IPAM.Config {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil {
			t.Fatalf("IPAM.Config subnet %q: %v", c.Subnet, err)
		}
		if p.Addr().Is4() {
			dyn4 = p
		} else {
			dyn6 = p
		}
	}
	if !dyn4.IsValid() || !dyn6.IsValid() || dyn6.Bits() != 64 || !netip.MustParsePrefix("fd00::/8").Contains(dyn6.Addr()) {
		t.Fatalf("dynamic pools %s and %s, want an IPv4 pool and a ULA /64", dyn4, dyn6)
	}
	if p := e.poolByPrefix(dyn6); p == nil || !p.Dynamic || p.Gateway != nth(dyn6, 1) {
		t.Errorf("ipam ls: dynamic IPv6 pool %+v, want dynamic with gateway %s", p, nth(dyn6, 1))
	}
	c := e.netName("c6")
	e.runC(c, dyn)
	if got := e.ifAddrs(c, "-6"); !slices.Equal(got, []netip.Prefix{netip.PrefixFrom(nth(dyn6, 2), 64)}) {
		t.Errorf("container %s: global IPv6 addresses %v, want %s/64", c, got, nth(dyn6, 2))
	}
	e.docker("rm", "-f", c)
	e.waitHeld("local/"+dyn6.String(), map[netip.Addr]string{})
	e.docker("network", "rm", dyn)
	if left := e.pools().Pools; len(left) != 0 {
		t.Errorf("after network rm: pools %+v, want none", left)
	}
}

// TestIpamRestarts: the plugin's records and the containers' real addresses
// stay the same across a dockerd restart, a plugin restart (SIGTERM, then
// kill -9) and both, and new containers never get an address in use. The
// plugin keeps its state itself (G8: nothing is replayed, since it asks for
// no RequiresRequestReplay), and it is up whenever dockerd starts (G9).
func TestIpamRestarts(t *testing.T) {
	e := setupIpam(t)
	s := freeSubnet(t)
	n := e.netName("rs")
	e.netCreate(n, "--subnet", s.String())
	poolID := "local/" + s.String()
	fixed := nth(s, 5)

	// Kept across daemon restarts: restart policy. "plain" is stopped by
	// the daemon restart, which must release its address.
	keep := []string{e.netName("keep1"), e.netName("keep2"), e.netName("keepip")}
	e.runC(keep[0], n, "--restart", "always")
	e.runC(keep[1], n, "--restart", "always")
	e.runC(keep[2], n, "--restart", "always", "--ip", fixed.String())
	e.runC(e.netName("plain"), n)
	e.checkConsistent(n, poolID, s)

	count := 0
	startNew := func(phase string) {
		t.Helper()
		for range 3 {
			count++
			e.runC(e.netName(fmt.Sprintf("new%d", count)), n)
		}
		e.checkConsistent(n, poolID, s)
		if addr := e.addr4(keep[2]); addr.Addr() != fixed {
			t.Errorf("%s: %s has %s, want --ip %s", phase, keep[2], addr, fixed)
		}
	}

	t.Log("dockerd restart")
	daemon.Restart(t)
	e.waitRunning(keep...)
	e.checkConsistent(n, poolID, s)
	if run := e.containersOn(n); !slices.Equal(run, slices.Sorted(slices.Values(keep))) {
		t.Errorf("after dockerd restart: running %v, want %v", run, keep)
	}
	startNew("dockerd restart")

	t.Log("plugin restart (SIGTERM)")
	if err := e.p.stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.p.start(); err != nil {
		t.Fatal(err)
	}
	e.checkConsistent(n, poolID, s)
	startNew("plugin restart")

	t.Log("plugin kill -9")
	e.p.kill9(t)
	// Its socket is stale now: `dockplug ipam` fails at once, saying so.
	begin := time.Now()
	if _, err := e.ipamCLI("ls"); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("ipam ls on a killed plugin: %v", err)
	} else if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("ipam ls on a killed plugin took %v", d)
	}
	if err := e.p.start(); err != nil {
		t.Fatal(err)
	}
	e.checkConsistent(n, poolID, s)
	startNew("plugin kill -9")

	t.Log("plugin kill -9 and dockerd restart")
	e.p.kill9(t)
	if err := e.p.start(); err != nil { // before dockerd (G9)
		t.Fatal(err)
	}
	daemon.Restart(t)
	e.waitRunning(keep...)
	e.checkConsistent(n, poolID, s)
	startNew("both restarted")

	out := e.docker("ps", "-aq", "--filter", "label="+e.label)
	e.docker(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
	e.waitHeld(poolID, map[netip.Addr]string{})
	e.docker("network", "rm", n)
	if left := e.pools().Pools; len(left) != 0 {
		t.Errorf("after network rm: pools %+v, want none", left)
	}
}

// TestIpamBadInput: what users get wrong reaches them through the docker
// CLI as the plugin's own message (the plugin answers non-200 with "Err",
// which dockerd reads, G12) and creates nothing: every error is final (G13).
func TestIpamBadInput(t *testing.T) {
	e := setupIpam(t)
	s := freeSubnet(t)
	n := e.netName("a")
	e.netCreate(n, "--subnet", s.String())
	dyn := e.netName("dyn")
	e.netCreate(dyn)
	dynSubnet, err := netip.ParsePrefix(e.netInspect(dyn).IPAM.Config[0].Subnet)
	if err != nil {
		t.Fatal(err)
	}

	// Overlapping explicit subnets: the error names the pool already held.
	for i, c := range []struct {
		subnet   netip.Prefix
		existing netip.Prefix
	}{
		{s, s},
		{netip.PrefixFrom(nth(s, 128), 25), s},
		{netip.PrefixFrom(s.Addr(), 16).Masked(), s},
		{dynSubnet, dynSubnet},
	} {
		name := e.netName(fmt.Sprintf("overlap%d", i))
		_, err := e.dockerErr(e.netCreateArgs(name, "--subnet", c.subnet.String())...)
		want := fmt.Sprintf("pool %s overlaps pool %s already allocated in the local address space", c.subnet, c.existing)
		if err == nil {
			t.Errorf("network with --subnet %s was created over %s", c.subnet, c.existing)
			e.docker("network", "rm", name)
		} else if !strings.Contains(err.Error(), want) {
			t.Errorf("--subnet %s: error %q, want it to say %q", c.subnet, err, want)
		}
	}
	// A pool the plugin grants for a network the bridge driver then refuses
	// (a bad MTU option, read only in its CreateNetwork): the daemon gives
	// the gateway and the pool back.
	bad := e.netName("badmtu")
	badSubnet := freeSubnet(t)
	if _, err := e.dockerErr(e.netCreateArgs(bad, "--subnet", badSubnet.String(), "-o", "com.docker.network.driver.mtu=lots")...); err == nil {
		t.Errorf("network with MTU \"lots\" was created")
		e.docker("network", "rm", bad)
	} else {
		t.Logf("bridge driver refused: %v", err)
	}
	if p := e.poolByPrefix(badSubnet); p != nil {
		t.Errorf("pool of the refused network left in the plugin: %+v", p)
	}
	if got := len(e.pools().Pools); got != 2 {
		t.Errorf("after the failed creates: %d pools, want 2: %+v", got, e.pools().Pools)
	}
	if out := e.docker("network", "ls", "-q", "--filter", "label="+e.label); len(strings.Fields(out)) != 2 {
		t.Errorf("after the failed creates, networks: %s", out)
	}

	holder := e.netName("holder")
	e.runC(holder, n, "--ip", nth(s, 10).String())
	for i, c := range []struct {
		ip   string
		want string
	}{
		{nth(s, 10).String(), "address already in use: " + nth(s, 10).String()},
		{nth(s, 1).String(), "address already in use: " + nth(s, 1).String()}, // the gateway
		{nth(s, 255).String(), "address reserved: " + nth(s, 255).String()},   // broadcast
		// The daemon itself refuses an address outside the network's
		// subnets, before asking the plugin.
		{"192.0.2.77", "192.0.2.77"},
	} {
		_, err := e.dockerErr(e.runArgs(e.netName(fmt.Sprintf("bad%d", i)), n, "--ip", c.ip)...)
		if err == nil {
			t.Errorf("--ip %s: container started", c.ip)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("--ip %s: error %q, want it to say %q", c.ip, err, c.want)
		} else {
			t.Logf("--ip %s: %v", c.ip, err)
		}
	}
	// `dockplug ipam show` of a pool the plugin does not hold.
	if out, err := e.ipamCLI("show", "192.0.2.0/24"); err == nil || !strings.Contains(err.Error(), `no pool "192.0.2.0/24"`) {
		t.Errorf("ipam show of an unknown pool: %v, %s", err, out)
	}
	// Nothing leaked: the holder and the gateway only.
	e.waitHeld("local/"+s.String(), map[netip.Addr]string{nth(s, 10): holder})
	if p := e.poolByPrefix(s); p == nil || p.Allocated != 2 {
		t.Errorf("after the failed runs: pool %+v, want 2 allocated", p)
	}
}

// waitHeld waits until the plugin's pool holds exactly want (address ->
// container name, "" for aux addresses; the gateway aside) with the names
// the daemon sends (see expectedHeld): dockerd releases an
// endpoint's address while it tears the container's network down, which
// may finish just after the CLI returns.
func (e *ipamEnv) waitHeld(poolID string, want map[netip.Addr]string) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := heldAddrs(e.show(poolID))
		exp := expectedHeld(want)
		if maps.Equal(got, exp) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("ipam show %s: addresses (and endpoint names) %v, want %v", poolID, got, exp)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitRunning waits until the containers (with a restart policy) run again
// after a daemon restart.
func (e *ipamEnv) waitRunning(names ...string) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := e.dockerErr(append([]string{"inspect", "-f", "{{.State.Running}}"}, names...)...)
		if err == nil && strings.Count(out, "true") == len(names) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("containers %v not all running after 60s: %q %v", names, out, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkConsistent checks that the plugin's records of pool match the
// addresses the running containers on network really have (and each
// container's name), that no two containers share an address, and that no
// container holds the gateway. It waits a little for releases in flight.
func (e *ipamEnv) checkConsistent(network, poolID string, subnet netip.Prefix) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		real := map[netip.Addr]string{}
		var problems []string
		for _, c := range e.containersOn(network) {
			a := e.addr4(c)
			if !subnet.Contains(a.Addr()) || a.Bits() != subnet.Bits() {
				problems = append(problems, fmt.Sprintf("%s has %s, outside %s", c, a, subnet))
			}
			if other, dup := real[a.Addr()]; dup {
				problems = append(problems, fmt.Sprintf("%s and %s both have %s", c, other, a.Addr()))
			}
			real[a.Addr()] = c
		}
		sh := e.show(poolID)
		if !sh.Pool.Gateway.IsValid() {
			problems = append(problems, "the plugin lost the gateway")
		}
		if c, ok := real[sh.Pool.Gateway]; ok {
			problems = append(problems, fmt.Sprintf("%s has the gateway address %s", c, sh.Pool.Gateway))
		}
		recorded := heldAddrs(sh)
		if exp := expectedHeld(real); !maps.Equal(recorded, exp) {
			problems = append(problems, fmt.Sprintf("plugin records %v (gateway aside), containers have %v", recorded, real))
		}
		if len(problems) == 0 {
			e.t.Logf("pool %s: gateway %s, containers %v", poolID, sh.Pool.Gateway, real)
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("pool %s inconsistent:\n  %s", poolID, strings.Join(problems, "\n  "))
		}
		time.Sleep(250 * time.Millisecond)
	}
}
