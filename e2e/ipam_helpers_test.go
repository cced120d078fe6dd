package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockplug/dockplug/internal/dockertest"
	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/driver"
)

// Helpers for the dockplug-ipam tests (ipam_test.go). They reuse the
// volume helpers' plug, serving dockplug-ipam=NAME instead.

// ipamEnv is one test's IPAM plugin and what the test made in the daemon:
// containers and networks carry label, so teardown finds them.
type ipamEnv struct {
	t     *testing.T
	p     *plug
	label string
}

// setupIpam starts a dockplug-ipam under a unique name (dpi-<random>) with
// its own state dir, and registers the teardown.
func setupIpam(t *testing.T) *ipamEnv {
	t.Helper()
	need(t)
	p := newPlug(t, "dpi", "dockplug-ipam", []string{ipam.Implements}, nil)
	e := &ipamEnv{t: t, p: p, label: "dockplug-e2e=" + p.Name}
	t.Cleanup(e.teardown)
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	// The daemon's socket lists only what the daemon uses; the admin
	// methods are on the admin socket.
	c := p.client().Plugin()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m, err := c.Activate(ctx); err != nil || strings.Join(m.Implements, ",") != ipam.Implements {
		t.Fatalf("plugin %s: the daemon's socket implements %v (%v), want only %s", p.Name, m, err, ipam.Implements)
	}
	return e
}

// teardown removes the test's containers (the daemon releases their
// addresses) and networks (it releases gateways, aux addresses and pools)
// while the plugin still runs, checks that the plugin holds no pool any
// more, and only then stops it: a network left on a dead IPAM plugin would
// make the daemon wait for it (G3, G9).
func (e *ipamEnv) teardown() {
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
		if res, err := e.poolsErr(); err != nil {
			t.Errorf("teardown: %v", err)
		} else if len(res.Pools) > 0 {
			t.Errorf("teardown: pools left in the plugin after removing every network: %+v", res.Pools)
		}
	}
	if err := e.p.stop(); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if _, err := os.Lstat(e.p.Sock); err == nil {
		os.Remove(e.p.Sock)
	}
	if err := os.RemoveAll(e.p.Root); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if t.Failed() {
		t.Logf("plugin %s output (tail):\n%s", e.p.Name, tail(e.p.out.String(), 80))
	}
}

// docker runs the CLI against the test daemon and fails the test on error.
func (e *ipamEnv) docker(args ...string) string {
	e.t.Helper()
	out, err := e.dockerErr(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *ipamEnv) dockerErr(args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := daemon.Docker(ctx, args...)
	if d := time.Since(start); d > slowCall {
		e.t.Logf("slow: docker %s took %v", strings.Join(args, " "), d.Round(time.Millisecond))
	}
	return out, err
}

// netName returns a network name unique to this test.
func (e *ipamEnv) netName(suffix string) string { return e.p.Name + "-" + suffix }

// netCreateArgs is `docker network create` on the built-in bridge driver
// with this plugin as IPAM driver and the test's label.
func (e *ipamEnv) netCreateArgs(name string, args ...string) []string {
	return append(append([]string{"network", "create", "-d", "bridge", "--ipam-driver", e.p.Name, "--label", e.label}, args...), name)
}

func (e *ipamEnv) netCreate(name string, args ...string) {
	e.t.Helper()
	e.docker(e.netCreateArgs(name, args...)...)
}

// runArgs is `docker run -d` of a container that sleeps, named name, on
// network, with the test's label.
func (e *ipamEnv) runArgs(name, network string, args ...string) []string {
	out := []string{"run", "-d", "--label", e.label, "--name", name, "--network", network}
	out = append(out, args...)
	return append(out, image, "sleep", "86400")
}

func (e *ipamEnv) runC(name, network string, args ...string) {
	e.t.Helper()
	e.docker(e.runArgs(name, network, args...)...)
}

// ipamCLI runs `dockplug ipam ARGS --json` against this plugin, which it
// reaches on the admin socket in the plugin's state dir (serve's
// --state-dir is p.Root).
func (e *ipamEnv) ipamCLI(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append([]string{"ipam"}, args...)
	args = append(args, "--json", "--state-dir", e.p.Root, "--name", e.p.Name)
	cmd := exec.CommandContext(ctx, binary, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("dockplug %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (e *ipamEnv) poolsErr() (*driver.PoolsResponse, error) {
	out, err := e.ipamCLI("ls")
	if err != nil {
		return nil, err
	}
	var res driver.PoolsResponse
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("dockplug ipam ls --json: %v: %s", err, out)
	}
	return &res, nil
}

// pools is `dockplug ipam ls --json`.
func (e *ipamEnv) pools() *driver.PoolsResponse {
	e.t.Helper()
	res, err := e.poolsErr()
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// poolByPrefix finds the plugin's pool for prefix in ls, nil if none.
func (e *ipamEnv) poolByPrefix(prefix netip.Prefix) *driver.PoolInfo {
	e.t.Helper()
	for _, p := range e.pools().Pools {
		if p.Pool == prefix {
			return &p
		}
	}
	return nil
}

// show is `dockplug ipam show REF --json`.
func (e *ipamEnv) show(ref string) *driver.PoolResponse {
	e.t.Helper()
	out, err := e.ipamCLI("show", ref)
	if err != nil {
		e.t.Fatal(err)
	}
	var res driver.PoolResponse
	if err := json.Unmarshal(out, &res); err != nil {
		e.t.Fatalf("dockplug ipam show --json: %v: %s", err, out)
	}
	return &res
}

// networkInfo is the part of `docker network inspect` the tests read.
type networkInfo struct {
	Name       string
	ID         string
	EnableIPv6 bool
	IPAM       struct {
		Driver  string
		Options map[string]string
		Config  []struct {
			Subnet     string
			IPRange    string
			Gateway    string
			AuxAddress map[string]string `json:"AuxiliaryAddresses"`
		}
	}
	Containers map[string]struct {
		Name        string
		IPv4Address string
		IPv6Address string
	}
}

func (e *ipamEnv) netInspect(name string) networkInfo {
	e.t.Helper()
	out := e.docker("network", "inspect", name)
	var ns []networkInfo
	if err := json.Unmarshal([]byte(out), &ns); err != nil || len(ns) != 1 {
		e.t.Fatalf("network inspect %s: %v: %s", name, err, out)
	}
	return ns[0]
}

var inetRE = regexp.MustCompile(`(?m)^\s+inet6? (\S+)`)

// ifAddrs lists the addresses `ip ADDR show eth0` prints inside a running
// container (family "-4" or "-6"); IPv6 link-local ones are left out.
func (e *ipamEnv) ifAddrs(container, family string) []netip.Prefix {
	e.t.Helper()
	out := e.docker("exec", container, "ip", family, "addr", "show", "eth0")
	return parseIfAddrs(e.t, out)
}

func parseIfAddrs(t *testing.T, out string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, m := range inetRE.FindAllStringSubmatch(out, -1) {
		p, err := netip.ParsePrefix(m[1])
		if err != nil {
			t.Fatalf("parse %q in %q: %v", m[1], out, err)
		}
		if p.Addr().IsLinkLocalUnicast() {
			continue
		}
		ps = append(ps, p)
	}
	return ps
}

// addr4 is the single IPv4 address of eth0 inside a running container.
func (e *ipamEnv) addr4(container string) netip.Prefix {
	e.t.Helper()
	ps := e.ifAddrs(container, "-4")
	if len(ps) != 1 {
		e.t.Fatalf("container %s: eth0 has IPv4 addresses %v, want one", container, ps)
	}
	return ps[0]
}

// containersOn lists the names of the running containers on network.
func (e *ipamEnv) containersOn(network string) []string {
	e.t.Helper()
	out := e.docker("ps", "--filter", "network="+network, "--filter", "label="+e.label, "--format", "{{.Names}}")
	names := strings.Fields(out)
	sort.Strings(names)
	return names
}

// heldAddrs is the plugin's view of a pool: every address but the gateway,
// with the endpoint name recorded for it ("" for aux addresses, and for
// every address on daemons that send no endpoint name).
func heldAddrs(res *driver.PoolResponse) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, a := range res.Addresses {
		if !a.Gateway {
			out[a.Address] = a.Endpoint
		}
	}
	return out
}

// expectedHeld turns want (address -> container name, "" for addresses no
// container holds) into what the plugin should record. Engine 29 sends the
// endpoint (container) name in RequestAddress
// (Options["com.docker.network.endpoint.name"], moby/moby#50586), so the
// plugin records it; dockerd 20.10 sends none, so it records "".
func expectedHeld(want map[netip.Addr]string) map[netip.Addr]string {
	out := make(map[netip.Addr]string, len(want))
	for a, name := range want {
		if engine() == dockertest.Engine2010 {
			name = ""
		}
		out[a] = name
	}
	return out
}

var (
	subnetsMu sync.Mutex
	subnets   = map[netip.Prefix]bool{}
)

// freeSubnet picks a random 10.x.y.0/24 in 10.64.0.0/10 (clear of
// dockertest's bridges in 10.128.0.0/9) that overlaps no host route and no
// subnet an earlier test picked.
func freeSubnet(t *testing.T) netip.Prefix {
	t.Helper()
	routes, err := driver.HostRoutes()
	if err != nil {
		t.Fatal(err)
	}
	subnetsMu.Lock()
	defer subnetsMu.Unlock()
	for range 200 {
		n, err := rand.Int(rand.Reader, big.NewInt(1<<14))
		if err != nil {
			t.Fatal(err)
		}
		v := n.Int64()
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(64 + v>>8), byte(v), 0}), 24)
		ok := !subnets[cand]
		for _, r := range routes {
			if r.Overlaps(cand) {
				ok = false
			}
		}
		if ok {
			subnets[cand] = true
			return cand
		}
	}
	t.Fatal("no free 10.64.0.0/10 subnet")
	return netip.Prefix{}
}

// freeSubnet6 is a random ULA /64 (fd12:3456:xxxx::/64) no other test used.
func freeSubnet6(t *testing.T) netip.Prefix {
	t.Helper()
	subnetsMu.Lock()
	defer subnetsMu.Unlock()
	for {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			t.Fatal(err)
		}
		cand := netip.MustParsePrefix(fmt.Sprintf("fd12:3456:%02x%02x::/64", b[0], b[1]))
		if !subnets[cand] {
			subnets[cand] = true
			return cand
		}
	}
}

// nth is the n-th address of p (0 is the network address).
func nth(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return a
}
