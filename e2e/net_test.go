package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestNetContainersReachEachOther: a network with --subnet and one
// without; the bridge carries the gateway, containers get the derived MAC
// (02:42 + IPv4) and reach each other by IP and by name (dockerd's embedded
// DNS answers on a remote driver's user-defined network, both engines).
func TestNetContainersReachEachOther(t *testing.T) {
	e := setupNet(t)
	sub := freeSubnet(t)
	withSubnet := e.network("a", "--subnet", sub.String())
	noSubnet := e.network("b")
	for _, net := range []string{withSubnet, noSubnet} {
		a := e.server("a-"+net[len(net)-1:], net)
		b := e.server("b-"+net[len(net)-1:], net)
		ipa := e.ip(a, net)
		if net == withSubnet && !sub.Contains(ipa) {
			t.Errorf("%s has %s, outside %s", a, ipa, sub)
		}
		e.expectHTTP("b->a by IP", b, "", ipa.String(), 80, "hello-a")
		e.expectHTTP("a->b by name", a, "", b, 80, "hello-b")
		mac := strings.TrimSpace(e.docker("exec", a, "cat", "/sys/class/net/eth0/address"))
		ip4 := ipa.As4()
		if want := fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", ip4[0], ip4[1], ip4[2], ip4[3]); mac != want {
			t.Errorf("%s: MAC %s, want %s derived from %s", a, mac, want, ipa)
		}
		// The bridge holds the gateway the daemon reports.
		// (network inspect shows no gateway when the user gave none.)
		gw := strings.TrimSpace(e.docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).Gateway}}", net), a))
		id := e.networkID(net)
		out, err := exec.Command("ip", "-4", "-o", "addr", "show", "dev", "dn-"+id[:12]).CombinedOutput()
		if err != nil || !strings.Contains(string(out), " "+gw+"/") {
			t.Errorf("bridge of %s: want gateway %s: %s %v", net, gw, out, err)
		}
		route := e.docker("exec", a, "ip", "route")
		if !strings.Contains(route, "default via "+gw) {
			t.Errorf("%s: routes %q, want default via %s", a, route, gw)
		}
	}
}

// TestNetOutbound: a normal network reaches a server in another namespace
// routed through the host (masqueraded: the server sees the host's
// address); an --internal network does not, and gets no default route
// (Join returns no gateway and DisableGatewayService, so the daemon
// attaches no docker_gwbridge, on both engines).
func TestNetOutbound(t *testing.T) {
	e := setupNet(t)
	ns := newHostNS(t)
	ns.serveHTTP(t)
	normal := e.network("out")
	internal := e.network("int", "--internal")
	c := e.server("c", normal)
	i := e.server("i", internal)
	e.expectHTTP("normal network -> namespace", c, "", ns.NSAddr.String(), 8080, "hello-"+ns.Name)
	e.expectNoHTTP("internal network -> namespace", i, "", ns.NSAddr.String(), 8080)
	if r := e.docker("exec", i, "ip", "route"); strings.Contains(r, "default") {
		t.Errorf("internal network: container has a default route: %s", r)
	}
	if out := e.docker("inspect", "-f", "{{len .NetworkSettings.Networks}}", i); strings.TrimSpace(out) != "1" {
		t.Errorf("internal network: container on %s networks, want 1 (no docker_gwbridge)", out)
	}
	// Inside the internal network, containers still talk.
	j := e.server("j", internal)
	e.expectHTTP("inside internal network", j, "", e.ip(i, internal).String(), 80, "hello-i")
	// Masqueraded, the server sees the host's address; with
	// masquerade=false the container's own (the namespace routes back
	// through the host).
	if got := ns.seenFrom(t, c); got != ns.HostAddr.String() {
		t.Errorf("normal network: server sees %q, want the host's %s", got, ns.HostAddr)
	}
	nomasq := e.network("nomasq", "-o", "masquerade=false")
	m := e.server("m", nomasq)
	if got, want := ns.seenFrom(t, m), e.ip(m, nomasq).String(); got != want {
		t.Errorf("masquerade=false: server sees %q, want the container's %s", got, want)
	}
	// Networks are isolated from each other.
	e.expectNoHTTP("normal -> internal network", c, "", e.ip(i, internal).String(), 80)
	e.expectNoHTTP("normal -> other network", c, "", e.ip(m, nomasq).String(), 80)
}

// TestNetICC: with icc=false containers of one network cannot reach each
// other, but reach the host (their gateway) and the outside.
func TestNetICC(t *testing.T) {
	e := setupNet(t)
	ns := newHostNS(t)
	ns.serveHTTP(t)
	net := e.network("icc", "-o", "icc=false")
	a := e.server("a", net)
	b := e.server("b", net)
	e.expectNoHTTP("icc=false: b -> a", b, "", e.ip(a, net).String(), 80)
	e.expectHTTP("icc=false: a -> namespace", a, "", ns.NSAddr.String(), 8080, "hello-"+ns.Name)
	gw := strings.TrimSpace(e.docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).Gateway}}", net), a))
	if _, err := e.dockerErr("exec", a, "ping", "-c", "1", "-W", "3", gw); err != nil {
		t.Errorf("icc=false: a cannot ping its gateway %s: %v", gw, err)
	}
}
