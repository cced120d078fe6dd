package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestNetKill9: kill -9 of the plugin with live containers. The data plane
// is the kernel's: connectivity and published ports hold while the plugin
// is dead. Meanwhile the host loses some of what the plugin made (the
// bridge with its gateway address, the whole nftables table) and gains a stale link of the
// plugin's; at restart the plugin reconciles from its state (G8: the
// daemon replays nothing) and afterwards new containers, rm and network rm
// work, leaving nothing behind.
func TestNetKill9(t *testing.T) {
	e := setupNet(t)
	ports := freePorts(t, 2)
	port := ports[0]
	net1 := e.network("k", "--subnet", freeSubnet(t).String())
	a := e.server("a", net1, "-p", fmt.Sprintf("127.0.0.1:%d:80", port))
	b := e.server("b", net1)
	// gone's veth will vanish while the plugin is dead, as when its
	// container's namespace goes away and no Leave can reach the plugin.
	gone := e.server("gone", net1, "-p", fmt.Sprintf("127.0.0.1:%d:80", ports[1]))
	goneEP := strings.TrimSpace(e.docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).EndpointID}}", net1), gone))
	ipa := e.ip(a, net1).String()
	br := "dn-" + e.networkID(net1)[:12]
	gw := strings.TrimSpace(e.docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).Gateway}}", net1), a))

	e.p.kill9(t)
	e.expectHTTP("plugin dead: b -> a", b, "", ipa, 80, "hello-a")
	e.expectHTTP("plugin dead: published port", "", "", "127.0.0.1", port, "hello-a")

	// Damage while it is down.
	orphan := "dn-orphan" + randHex(2)
	for _, args := range [][]string{
		{"link", "del", br}, // the bridge (and its address); the veths stay, detached
		{"link", "del", "dnh" + goneEP[:12]},
		{"link", "add", orphan, "type", "bridge"},
		{"link", "set", orphan, "alias", "dockplug-net:" + e.p.Name + ":net:0123456789ab"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", orphan).Run() })
	e.deleteTable()

	if err := e.p.start(); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "-4", "-o", "addr", "show", "dev", br).CombinedOutput(); !strings.Contains(string(out), " "+gw+"/") {
		t.Errorf("after restart: bridge %s lacks gateway %s again: %s", br, gw, out)
	}
	e.expectHTTP("after restart: b -> a (veths attached to the new bridge)", b, "", ipa, 80, "hello-a")
	if exec.Command("ip", "link", "show", orphan).Run() == nil {
		t.Errorf("after restart: stale link %s with the plugin's alias is still there", orphan)
	}
	e.expectHTTP("after restart: published port (rules rebuilt)", "", "", "127.0.0.1", port, "hello-a")
	if dnat := e.dnatPorts(); dnat[ports[1]] || !dnat[port] {
		t.Errorf("after restart: DNAT rules for %v; want %d, and not %d whose endpoint's veth is gone", dnat, port, ports[1])
	}
	c := e.server("c", net1)
	e.expectHTTP("after restart: new container -> a", c, "", ipa, 80, "hello-a")
	e.expectHTTP("after restart: a -> new container by name", a, "", c, 80, "hello-c")
	// The bridge deleted under the running plugin: the next Join makes it
	// again.
	if out, err := exec.Command("ip", "link", "del", br).CombinedOutput(); err != nil {
		t.Fatalf("ip link del %s: %v: %s", br, err, out)
	}
	d := e.server("d", net1)
	e.expectHTTP("bridge recreated at Join: a -> d", a, "", e.ip(d, net1).String(), 80, "hello-d")
	e.docker("rm", "-f", a, b, c, d, gone)
	e.docker("network", "rm", net1)
	if ls := e.ls(); len(ls.Networks) != 0 {
		t.Errorf("after rm and network rm the plugin holds %+v", ls.Networks)
	}
}

// TestNetRestartAlways: dockerd restarts (the plugin keeps running) and
// brings back a --restart always container: libnetwork creates its
// endpoint again, and the container is reachable on the new one.
func TestNetRestartAlways(t *testing.T) {
	e := setupNet(t)
	port := freePorts(t, 1)[0]
	net1 := e.network("ra")
	a := e.server("a", net1, "--restart", "always", "-p", fmt.Sprintf("127.0.0.1:%d:80", port))
	daemon.Restart(t)
	if !waitFor(60e9, func() bool {
		out, err := e.dockerErr("inspect", "-f", "{{.State.Running}}", a)
		return err == nil && strings.TrimSpace(out) == "true"
	}) {
		t.Fatalf("container %s not running after the daemon restart", a)
	}
	b := e.server("b", net1)
	e.expectHTTP("after dockerd restart: b -> a by name", b, "", a, 80, "hello-a")
	e.expectHTTP("after dockerd restart: published port", "", "", "127.0.0.1", port, "hello-a")
	eps := 0
	for _, n := range e.ls().Networks {
		eps += len(n.Endpoints)
	}
	if eps != 2 {
		t.Errorf("after the daemon restart the plugin holds %d endpoints, want 2: %+v", eps, e.ls())
	}
}
