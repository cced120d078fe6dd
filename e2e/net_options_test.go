package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestNetBadOptions: every bad option, a bridge name that exists and is
// not ours, and a subnet overlapping one of our networks (in another IPAM
// address space, so the daemon's IPAM does not refuse it first) fail
// network create with a clear error, and create nothing.
func TestNetBadOptions(t *testing.T) {
	e := setupNet(t)
	foreign := "dpx" + randHex(3)
	if out, err := exec.Command("ip", "link", "add", foreign, "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", foreign).Run() })
	sub := freeSubnet(t)
	e.network("ok", "--subnet", sub.String())

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "colour=blue"}, `unknown option "colour"`},
		{[]string{"-o", "mtu=big"}, `option mtu="big"`},
		{[]string{"-o", "mtu=10"}, "not between 68 and 65535"},
		{[]string{"-o", "icc=maybe"}, `option icc="maybe"`},
		{[]string{"-o", "masquerade=perhaps"}, `option masquerade="perhaps"`},
		{[]string{"-o", "bridge=a-name-far-too-long"}, "longer than 15 bytes"},
		{[]string{"-o", "bridge=a/b"}, "contains '/'"},
		{[]string{"-o", "mtu=1400", "-o", "com.docker.network.driver.mtu=1400"}, "given twice"},
		{[]string{"-o", "host_binding_ipv4=::1"}, "not an IPv4 address"},
		{[]string{"-o", "container_iface_prefix=eth0"}, "not ending in a digit"},
		{[]string{"-o", "bridge=" + foreign}, "already exists and is not this network's bridge"},
		{[]string{"--ipam-driver", e.ipam(), "--subnet", sub.String()}, "overlaps " + sub.String()},
	} {
		name := e.p.Name + "-bad"
		args := append(append([]string{"network", "create", "-d", e.p.Name, "--label", e.label}, c.args...), name)
		out, err := e.dockerErr(args...)
		if err == nil {
			t.Errorf("network create %v succeeded: %s", c.args, out)
			e.dockerErr("network", "rm", name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("network create %v: %v, want %q", c.args, err, c.want)
		}
	}
	if ls := e.ls(); len(ls.Networks) != 1 {
		t.Errorf("the plugin holds %d networks after the failures, want 1: %+v", len(ls.Networks), ls.Networks)
	}
	if links := e.ourLinks(); len(links) != 1 {
		t.Errorf("links of the plugin: %v, want only the good network's bridge", links)
	}
	if out, _ := exec.Command("ip", "-d", "link", "show", foreign).CombinedOutput(); strings.Contains(string(out), "dockplug") {
		t.Errorf("the foreign bridge was touched: %s", out)
	}
}

// TestNetOptions: bridge name, mtu, interface prefix (com.docker.network
// long names too), dockplug-ipam, and --ipv6: containers reach each other
// over IPv6 and the bridge carries the IPv6 gateway.
func TestNetOptions(t *testing.T) {
	e := setupNet(t)
	br := "dpb" + randHex(3)
	sub6 := freeSubnet6(t)
	net1 := e.network("o", "--ipam-driver", e.ipam(), "--subnet", freeSubnet(t).String(), "--ipv6", "--subnet", sub6.String(),
		"-o", "com.docker.network.bridge.name="+br, "-o", "mtu=1400", "-o", "container_iface_prefix=dp")
	a := e.server("a", net1)
	b := e.server("b", net1)
	out, err := exec.Command("ip", "-o", "link", "show", br).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "mtu 1400") {
		t.Errorf("bridge %s: want mtu 1400: %s %v", br, out, err)
	}
	if links := e.docker("exec", a, "ip", "-o", "link"); !strings.Contains(links, "dp0") || !strings.Contains(links, "mtu 1400") {
		t.Errorf("container links: want dp0 with mtu 1400: %s", links)
	}
	ip6 := strings.TrimSpace(e.docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).GlobalIPv6Address}}", net1), b))
	if !strings.HasPrefix(ip6, strings.TrimSuffix(sub6.Addr().String(), "::")) {
		t.Fatalf("b's IPv6 address %q is not in %s", ip6, sub6)
	}
	if _, err := e.dockerErr("exec", a, "ping", "-6", "-c", "1", "-W", "3", ip6); err != nil {
		t.Errorf("a -> b over IPv6: %v", err)
	}
	e.expectHTTP("a -> b over IPv4 (dockplug-ipam)", a, "", e.ip(b, net1).String(), 80, "hello-b")
	gw6 := strings.TrimSpace(e.docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPv6Gateway}}", net1), a))
	if out, _ := exec.Command("ip", "-6", "-o", "addr", "show", "dev", br).CombinedOutput(); gw6 == "" || !strings.Contains(string(out), gw6+"/") {
		t.Errorf("bridge %s: want IPv6 gateway %q: %s", br, gw6, out)
	}
}

// TestNetConnectDisconnect: docker network connect/disconnect of a
// running container adds and removes an interface (and the veth).
func TestNetConnectDisconnect(t *testing.T) {
	e := setupNet(t)
	net1 := e.network("one")
	net2 := e.network("two")
	a := e.server("a", net1)
	b := e.server("b", net2)
	e.expectNoHTTP("before connect: a -> b", a, "", e.ip(b, net2).String(), 80)
	e.docker("network", "connect", net2, a)
	if out := e.docker("exec", a, "ip", "-o", "-4", "addr"); !strings.Contains(out, "eth1") {
		t.Errorf("after connect: %s", out)
	}
	e.expectHTTP("after connect: a -> b", a, "", e.ip(b, net2).String(), 80, "hello-b")
	e.expectHTTP("after connect: b -> a by name", b, "", a, 80, "hello-a")
	before := len(e.ourLinks())
	e.docker("network", "disconnect", net2, a)
	if out := e.docker("exec", a, "ip", "-o", "-4", "addr"); strings.Contains(out, "eth1") {
		t.Errorf("after disconnect: %s", out)
	}
	if after := len(e.ourLinks()); after != before-1 {
		t.Errorf("after disconnect: %d links of ours, want %d", after, before-1)
	}
	e.expectNoHTTP("after disconnect: a -> b", a, "", e.ip(b, net2).String(), 80)
}
