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
