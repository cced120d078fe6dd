package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dockplug/dockplug/internal/dockertest"
)

// freePorts returns n consecutive TCP ports that are free on every
// address right now (below the ephemeral range, so random host ports do
// not collide with them).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	for range 100 {
		base := 20000 + int(randByte())*30 + int(randByte())%30
		var ls []net.Listener
		ok := true
		for i := range n {
			l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			out := make([]int, n)
			for i := range out {
				out[i] = base + i
			}
			return out
		}
	}
	t.Fatal("no free ports")
	return nil
}

func ephemeral(t *testing.T) (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Sscan(string(b), &lo, &hi)
	return lo, hi
}

func randByte() byte {
	var b [1]byte
	fmt.Sscanf(randHex(1), "%02x", &b[0])
	return b[0]
}

// published is the host side ("IP:PORT") of container's published ports,
// from `dockplug net ls --json`, keyed by "containerport/proto".
func (e *netEnv) published(container, net string) map[string]string {
	e.t.Helper()
	ip := e.ip(container, net).String()
	out := map[string]string{}
	for _, n := range e.ls().Networks {
		for _, ep := range n.Endpoints {
			for _, p := range ep.Published {
				host, rest, _ := strings.Cut(p, "->")
				cont, proto, _ := strings.Cut(rest, "/")
				if a, port, _ := strings.Cut(cont, ":"); a == ip {
					out[port+"/"+proto] = host
				}
			}
		}
	}
	return out
}

// TestNetPorts: -p on 127.0.0.1, on every address (reached at the host's
// own address, from a client namespace routed through the host, and from
// another container through the gateway), port ranges, a random host
// port, and a taken host port.
func TestNetPorts(t *testing.T) {
	e := setupNet(t)
	ns := newHostNS(t)
	p := freePorts(t, 9)
	net1 := e.network("ports")
	c := e.server("c", net1, "-p", fmt.Sprintf("127.0.0.1:%d:80", p[0]), "-p", fmt.Sprintf("%d:80", p[1]), "-p", "80")
	host := ns.HostAddr.String()

	e.expectHTTP("host -> 127.0.0.1", "", "", "127.0.0.1", p[0], "hello-c")
	e.expectHTTP("host -> 127.0.0.1 (all addresses)", "", "", "127.0.0.1", p[1], "hello-c")
	e.expectHTTP("host -> own address", "", "", host, p[1], "hello-c")
	e.expectHTTP("namespace -> host", "", ns.Name, host, p[1], "hello-c")
	e.expectNoHTTP("namespace -> host port bound to 127.0.0.1", "", ns.Name, host, p[0])
	other := e.server("o", net1)
	gw := strings.TrimSpace(e.docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).Gateway}}", net1), other))
	e.expectHTTP("other container -> gateway (hairpin)", other, "", gw, p[1], "hello-c")
	e.expectHTTP("other container -> host address (hairpin)", other, "", host, p[1], "hello-c")

	// A random host port (-p 80): the daemon sends HostPort 0 and leaves
	// the choice to the driver, and shows no remote driver's mapping
	// (G11): docker port is empty on both engines; dockplug net ls has it.
	if out := strings.TrimSpace(e.docker("port", c)); out != "" {
		t.Errorf("docker port %s: %q, want nothing (G11)", c, out)
	}
	if out := strings.TrimSpace(e.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", c)); out != "{}" {
		t.Errorf("NetworkSettings.Ports of %s: %s, want {} (G11)", c, out)
	}
	// What the plugin answers to EndpointOperInfo (dockplug.* keys) shows
	// nowhere either.
	if ci, ni := e.docker("inspect", c), e.docker("network", "inspect", net1); strings.Contains(ci+ni, "dockplug.published") {
		t.Errorf("EndpointOperInfo values reached inspect")
	}
	var random int
	for _, n := range e.ls().Networks {
		for _, ep := range n.Endpoints {
			for _, m := range ep.Published {
				var port int
				if _, err := fmt.Sscanf(m, "0.0.0.0:%d->", &port); err == nil && port != p[1] {
					random = port
				}
			}
		}
	}
	if lo, hi := ephemeral(t); random < lo || random > hi {
		t.Fatalf("random host port %d, want one in the ephemeral range %d-%d (net ls: %+v)", random, lo, hi, e.ls())
	}
	// The table view names the bridge and the random mapping too.
	if out, err := exec.Command(binary, "net", "ls", "--state-dir", e.p.Root, "--name", e.p.Name).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "dn-"+e.networkID(net1)[:12]) || !strings.Contains(string(out), fmt.Sprintf("0.0.0.0:%d->", random)) {
		t.Errorf("dockplug net ls: %v\n%s", err, out)
	}
	dnat := e.dnatPorts()
	for _, port := range []int{p[0], p[1], random} {
		if !dnat[port] {
			t.Errorf("no DNAT rule for host port %d (rules for %v)", port, dnat)
		}
	}
	e.expectHTTP("host -> random port", "", "", "127.0.0.1", random, "hello-c")

	// Ranges: 80-81 onto two host ports; 80 onto the first free port of a
	// range whose first port is taken.
	hold, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p[4]))
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	r2 := e.server("r", net1, "-p", fmt.Sprintf("127.0.0.1:%d-%d:80-81", p[2], p[3]), "-p", fmt.Sprintf("127.0.0.1:%d-%d:80/udp", p[4], p[5]))
	pub := e.published(r2, net1)
	want := map[string]string{
		"80/tcp": fmt.Sprintf("127.0.0.1:%d", p[2]),
		"81/tcp": fmt.Sprintf("127.0.0.1:%d", p[3]),
		"80/udp": fmt.Sprintf("127.0.0.1:%d", p[4]), // the TCP listener does not hold the UDP port
	}
	if !equalMaps(pub, want) {
		t.Errorf("ranges: published %v, want %v", pub, want)
	}
	e.expectHTTP("host -> range", "", "", "127.0.0.1", p[2], "hello-r")
	r3 := e.server("r3", net1, "-p", fmt.Sprintf("127.0.0.1:%d-%d:80", p[4], p[5]))
	if got := e.published(r3, net1)["80/tcp"]; got != fmt.Sprintf("127.0.0.1:%d", p[5]) {
		t.Errorf("range with its first port taken: published on %q, want port %d", got, p[5])
	}

	// A taken host port: the container does not start, with a clear
	// error, and nothing of it stays programmed.
	taken, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p[6]))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	name := e.p.Name + "-taken"
	out, err := e.dockerErr("run", "-d", "--label", e.label, "--name", name, "--network", net1, "-p", fmt.Sprintf("%d:80", p[6]), image, "sleep", "300")
	// Both engines fail the start with the driver's words; Engine 29
	// wraps them once more.
	msg := fmt.Sprint(err)
	if err == nil || !strings.Contains(msg, fmt.Sprintf("driver failed programming external connectivity on endpoint %s (", name)) ||
		!strings.Contains(msg, fmt.Sprintf("NetworkDriver.ProgramExternalConnectivity: host port 0.0.0.0:%d/tcp is already in use", p[6])) {
		t.Errorf("docker run on a taken host port: %v %s", err, out)
	}
	if wrapped := strings.Contains(msg, "failed to set up container networking: driver failed"); wrapped != (engine() == dockertest.Engine29) {
		t.Errorf("engine %s: error wrapped in 'failed to set up container networking': %v", engine(), wrapped)
	}
	if st := strings.TrimSpace(e.docker("inspect", "-f", "{{.State.Status}}", name)); st != "created" {
		t.Errorf("container on a taken port: state %q, want created (never started)", st)
	}
	if e.dnatPorts()[p[6]] {
		t.Errorf("a rule for the taken port %d stays", p[6])
	}
	eps := 0
	for _, n := range e.ls().Networks {
		eps += len(n.Endpoints)
	}
	if eps != 4 {
		t.Errorf("after the failed start the plugin holds %d endpoints, want 4", eps)
	}
}
