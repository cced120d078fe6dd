package e2e

import (
	"context"
	endian "encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/dockplug/dockplug/network"
	"github.com/dockplug/dockplug/network/bridge"
)

// Helpers for the dockplug-net tests (net_*_test.go). They reuse the
// volume helpers' plug, serving dockplug-net=NAME.

// netEnv is one test's network plugin; containers and networks carry
// label, so teardown finds them.
type netEnv struct {
	t     *testing.T
	p     *plug
	label string
}

// setupNet starts a dockplug-net under a unique name (dpn-<random>). It
// runs with --net-ip-forward=false: the machine's global ip_forward stays
// as it is (the harness's dockerds leave it alone too); tests that need
// traffic of another namespace forwarded turn forwarding on for the links
// they made themselves (see newHostNS).
func setupNet(t *testing.T) *netEnv {
	t.Helper()
	need(t)
	p := newPlug(t, "dpn", "dockplug-net", []string{network.Implements}, []string{"--net-ip-forward=false"})
	// The same process serves a dockplug-ipam as NAME-ipam.
	p.args = append(p.args, "dockplug-ipam="+p.Name+"-ipam")
	e := &netEnv{t: t, p: p, label: "dockplug-e2e=" + p.Name}
	t.Cleanup(e.teardown)
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	// The daemon's socket lists only NetworkDriver; dockplug net ls uses
	// the admin socket.
	c := p.client().Plugin()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m, err := c.Activate(ctx); err != nil || strings.Join(m.Implements, ",") != network.Implements {
		t.Fatalf("plugin %s: the daemon's socket implements %v (%v), want only %s", p.Name, m, err, network.Implements)
	}
	return e
}

// teardown removes the test's containers and networks while the plugin
// runs, then checks that the plugin left no link, table or state behind.
func (e *netEnv) teardown() {
	t := e.t
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	removeContainers(ctx, t, e.p, e.label)
	if out, err := daemon.Docker(ctx, "network", "ls", "-q", "--filter", "label="+e.label); err != nil {
		t.Errorf("teardown: %v", err)
	} else if ids := strings.Fields(out); len(ids) > 0 {
		if _, err := daemon.Docker(ctx, append([]string{"network", "rm"}, ids...)...); err != nil {
			t.Errorf("teardown: %v", err)
		}
	}
	if e.p.running() {
		if ls, err := e.lsErr(); err != nil {
			t.Errorf("teardown: net ls: %v", err)
		} else if len(ls.Networks) > 0 {
			t.Errorf("teardown: networks left in the plugin: %+v", ls.Networks)
		}
	}
	if err := e.p.stop(); err != nil {
		t.Errorf("teardown: %v", err)
	}
	for _, s := range []string{e.p.Sock, socketPath(e.ipam())} {
		if _, err := os.Lstat(s); err == nil {
			os.Remove(s)
		}
	}
	if links := e.ourLinks(); len(links) > 0 {
		t.Errorf("teardown: links of the plugin left: %v", links)
		for _, l := range links {
			exec.Command("ip", "link", "del", l).Run()
		}
	}
	if e.hasTable() {
		t.Errorf("teardown: nftables table inet %s left", e.p.Name)
		e.deleteTable()
	}
	if err := os.RemoveAll(e.p.Root); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if t.Failed() {
		t.Logf("plugin %s output (tail):\n%s", e.p.Name, tail(e.p.out.String(), 80))
	}
}

// ourLinks lists links whose alias marks them as this plugin's.
func (e *netEnv) ourLinks() []string {
	out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		e.t.Errorf("ip link: %v: %s", err, out)
		return nil
	}
	var links []string
	prefix := "dockplug-net:" + e.p.Name + ":"
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "alias "); i >= 0 && strings.HasPrefix(line[i+len("alias "):], prefix) {
			f := strings.Fields(line)
			if len(f) > 1 {
				links = append(links, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
			}
		}
	}
	return links
}

// ipam is the name of the dockplug-ipam served next to the network plugin.
func (e *netEnv) ipam() string { return e.p.Name + "-ipam" }

// The plugin's nftables table is inspected through the same library the
// plugin uses, so the tests need no nft tool.

func (e *netEnv) hasTable() bool {
	c, err := nftables.New()
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.CloseLasting()
	_, err = c.ListTableOfFamily(e.p.Name, nftables.TableFamilyINet)
	return err == nil
}

// dnatPorts are the destination ports the plugin's prerouting chain
// matches: the published host ports.
func (e *netEnv) dnatPorts() map[int]bool {
	e.t.Helper()
	c, err := nftables.New()
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.CloseLasting()
	out := map[int]bool{}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: e.p.Name}
	rules, err := c.GetRules(t, &nftables.Chain{Name: "prerouting", Table: t})
	if err != nil {
		return out // no table
	}
	for _, r := range rules {
		for i, x := range r.Exprs {
			p, ok := x.(*expr.Payload)
			if !ok || p.Base != expr.PayloadBaseTransportHeader || p.Offset != 2 || p.Len != 2 || i+1 >= len(r.Exprs) {
				continue
			}
			if cmp, ok := r.Exprs[i+1].(*expr.Cmp); ok && len(cmp.Data) == 2 {
				out[int(endian.BigEndian.Uint16(cmp.Data))] = true
			}
		}
	}
	return out
}

// deleteTable removes the plugin's table behind its back.
func (e *netEnv) deleteTable() {
	e.t.Helper()
	c, err := nftables.New()
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.CloseLasting()
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: e.p.Name})
	if err := c.Flush(); err != nil {
		e.t.Errorf("delete table inet %s: %v", e.p.Name, err)
	}
}

func (e *netEnv) docker(args ...string) string {
	e.t.Helper()
	return daemon.MustDocker(e.t, args...)
}

func (e *netEnv) dockerErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return daemon.Docker(ctx, args...)
}

// network creates a dockplug-net network named after the plugin, with the
// test's label, and returns its name.
func (e *netEnv) network(suffix string, args ...string) string {
	e.t.Helper()
	name := e.p.Name + "-" + suffix
	e.docker(append(append([]string{"network", "create", "-d", e.p.Name, "--label", e.label}, args...), name)...)
	return name
}

// sleeper starts a detached container on net that runs a busybox httpd on
// port 80 serving its own name, and returns the container's name.
func (e *netEnv) server(name, net string, args ...string) string {
	e.t.Helper()
	cname := e.p.Name + "-" + name
	script := fmt.Sprintf("mkdir -p /www && echo hello-%s > /www/index.html && exec httpd -f -p 80 -h /www", name)
	e.docker(append(append([]string{"run", "-d", "--label", e.label, "--name", cname, "--network", net}, args...),
		image, "sh", "-c", script)...)
	return cname
}

// ip is the container's address on net.
func (e *netEnv) ip(container, net string) netip.Addr {
	e.t.Helper()
	out := e.docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", net), container)
	a, err := netip.ParseAddr(strings.TrimSpace(out))
	if err != nil {
		e.t.Fatalf("address of %s on %s: %q", container, net, out)
	}
	return a
}

// httpGet fetches / from addr:port with nc, inside container (or, with
// ns != "", in the network namespace ns on the host), and returns the
// body's first line or the error.
func httpFrom(ctx context.Context, container, ns, addr string, port int) (string, error) {
	return httpPath(ctx, container, ns, addr, port, "/")
}

func httpPath(ctx context.Context, container, ns, addr string, port int, path string) (string, error) {
	req := `printf 'GET ` + path + ` HTTP/1.0\r\n\r\n' | nc -w 3 ` + addr + " " + fmt.Sprint(port)
	var cmd *exec.Cmd
	switch {
	case container != "":
		return daemon.Docker(ctx, "exec", container, "sh", "-c", req)
	case ns != "":
		cmd = exec.CommandContext(ctx, "ip", "netns", "exec", ns, "busybox", "sh", "-c", "export PATH=/bin:/usr/bin; "+strings.Replace(req, "nc ", "busybox nc ", 1))
	default:
		cmd = exec.CommandContext(ctx, "busybox", "sh", "-c", strings.Replace(req, "nc ", "busybox nc ", 1))
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%v: %s", err, out)
	}
	return string(out), nil
}

// expectHTTP asserts that the server answers with its hello line.
func (e *netEnv) expectHTTP(what, container, ns, addr string, port int, want string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := httpFrom(ctx, container, ns, addr, port)
	if err != nil || !strings.Contains(out, want) {
		e.t.Errorf("%s: GET http://%s:%d: want %q, got %q (%v)", what, addr, port, want, out, err)
	}
}

// expectNoHTTP asserts that the request gets no answer.
func (e *netEnv) expectNoHTTP(what, container, ns, addr string, port int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := httpFrom(ctx, container, ns, addr, port)
	if err == nil && strings.Contains(out, "hello") {
		e.t.Errorf("%s: GET http://%s:%d answered, want no connection: %q", what, addr, port, out)
	}
}

// ls is the plugin's `dockplug net ls --json`.
func (e *netEnv) ls() *bridge.ListResponse {
	e.t.Helper()
	r, err := e.lsErr()
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *netEnv) lsErr() (*bridge.ListResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "net", "ls", "--json", "--state-dir", e.p.Root, "--name", e.p.Name).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("dockplug net ls: %v: %s", err, out)
	}
	var r bridge.ListResponse
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("dockplug net ls: %v: %s", err, out)
	}
	return &r, nil
}

// networkID is the daemon's ID of net.
func (e *netEnv) networkID(net string) string {
	e.t.Helper()
	return strings.TrimSpace(e.docker("network", "inspect", "-f", "{{.Id}}", net))
}

// hostNS is a network namespace on this host, linked to it by a veth pair
// with a /30 of its own: an "other host" for the tests, reached (and
// reaching the host) only through that link.
type hostNS struct {
	Name     string
	HostIf   string
	HostAddr netip.Addr // the host's end
	NSAddr   netip.Addr // the namespace's end
}

// newHostNS makes the namespace, with a default route via the host, and
// turns IPv4 forwarding on for its host-side link only (the test's own
// link; the global switch is left alone). Removed at cleanup.
func newHostNS(t *testing.T) *hostNS {
	t.Helper()
	id := randHex(3)
	p := freeSubnet(t)
	h := &hostNS{Name: "dpns-" + id, HostIf: "dpt" + id, HostAddr: nth(p, 1), NSAddr: nth(p, 2)}
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", h.HostIf).Run()
		exec.Command("ip", "netns", "del", h.Name).Run()
	})
	bits := fmt.Sprint(p.Bits())
	for _, args := range [][]string{
		{"netns", "add", h.Name},
		{"link", "add", h.HostIf, "type", "veth", "peer", "name", "eth0", "netns", h.Name},
		{"addr", "add", h.HostAddr.String() + "/" + bits, "dev", h.HostIf},
		{"link", "set", h.HostIf, "up"},
		{"-n", h.Name, "addr", "add", h.NSAddr.String() + "/" + bits, "dev", "eth0"},
		{"-n", h.Name, "link", "set", "eth0", "up"},
		{"-n", h.Name, "link", "set", "lo", "up"},
		{"-n", h.Name, "route", "add", "default", "via", h.HostAddr.String()},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+h.HostIf+"/forwarding", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// serveHTTP runs a busybox httpd in the namespace on port 8080 serving
// "hello-<ns>", and at /cgi-bin/from the client address it sees, until the
// test ends.
func (h *hostNS) serveHTTP(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/index.html", []byte("hello-"+h.Name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir+"/cgi-bin", 0o755); err != nil {
		t.Fatal(err)
	}
	cgi := "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"from=$REMOTE_ADDR;\"\n"
	if err := os.WriteFile(dir+"/cgi-bin/from", []byte(cgi), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", h.Name, "busybox", "httpd", "-f", "-p", "8080", "-h", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// seenFrom is the client address the namespace's server sees for a request
// from container.
func (h *hostNS) seenFrom(t *testing.T, container string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := httpPath(ctx, container, "", h.NSAddr.String(), 8080, "/cgi-bin/from")
	_, rest, ok := strings.Cut(out, "from=")
	if err != nil || !ok {
		t.Errorf("%s -> %s: no answer: %q %v", container, h.Name, out, err)
		return ""
	}
	a, _, _ := strings.Cut(rest, ";")
	// busybox httpd prints "[::ffff:10.0.0.1]".
	return strings.TrimPrefix(strings.Trim(a, "[]"), "::ffff:")
}
