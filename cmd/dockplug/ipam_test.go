package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/ipam/driver"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store/etcd/etcdtest"
)

func ipamClient(t *testing.T, sock, name string) *ipam.Client {
	t.Helper()
	addr := "unix://" + filepath.Join(sock, name+".sock")
	waitActivate(t, addr)
	c, err := plugin.NewClient(addr, plugin.WithBackoff(plugin.Backoff{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return ipam.NewClient(c)
}

// kill -9 while allocations are in flight, then restart: nothing
// acknowledged is lost and nothing is handed out twice.
func TestIpamSurvivesKill9(t *testing.T) {
	sock, state := shortDir(t), shortDir(t)
	args := []string{"serve", "dockplug-ipam=ipk9", "--socket-dir", sock, "--state-dir", state}
	p := startBinary(t, nil, nil, args...)
	c := ipamClient(t, sock, "ipk9")
	ctx := context.Background()
	pool, err := c.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: "local", Pool: "10.77.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]string{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ep := "w" + string(rune('a'+w)) + "-" + time.Now().Format("150405.000000000")
				r, err := c.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: pool.PoolID,
					Options: map[string]string{ipam.OptEndpointName: ep}})
				if err != nil {
					return // the plugin died mid-call: not acknowledged
				}
				mu.Lock()
				if prev, dup := acked[r.Address]; dup {
					t.Errorf("%s handed out twice (%s, %s)", r.Address, prev, ep)
				}
				acked[r.Address] = ep
				mu.Unlock()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	if _, err := os.Lstat(adminSocketPath(state, "ipk9")); err != nil {
		t.Fatalf("kill -9 left no stale admin socket to take over: %v", err)
	}
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no allocation acknowledged before the kill")
	}
	t.Logf("%d allocations acknowledged before kill -9", len(acked))

	// Restart on the same state: the stale sockets, public and admin, are replaced.
	p2 := startBinary(t, nil, nil, args...)
	c2 := ipamClient(t, sock, "ipk9")
	out, err := exec.Command(binary, "ipam", "show", "10.77.0.0/16", "--json", "--state-dir", state, "--name", "ipk9").Output()
	if err != nil {
		t.Fatalf("ipam show: %v", err)
	}
	var shown driver.PoolResponse
	if err := json.Unmarshal(out, &shown); err != nil {
		t.Fatal(err)
	}
	held := map[string]string{}
	for _, a := range shown.Addresses {
		held[a.Address.String()+"/16"] = a.Endpoint
	}
	for addr, ep := range acked {
		if held[addr] != ep {
			t.Errorf("acknowledged %s (%s) lost after kill -9: state has %q", addr, ep, held[addr])
		}
	}
	// At most the calls in flight at the kill were written but not acknowledged.
	if extra := len(held) - len(acked); extra < 0 || extra > 4 {
		t.Errorf("state holds %d addresses, %d acknowledged", len(held), len(acked))
	}
	for range 100 {
		r, err := c2.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: pool.PoolID})
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := held[r.Address]; dup {
			t.Fatalf("%s handed out again after restart", r.Address)
		}
		held[r.Address] = ""
	}
	ls, err := exec.Command(binary, "ipam", "ls", "--state-dir", state, "--name", "ipk9").Output()
	if err != nil || !strings.Contains(string(ls), "local/10.77.0.0/16") {
		t.Fatalf("ipam ls: %v\n%s", err, ls)
	}
	p2.stop(t)
}

func TestParsePoolSpecs(t *testing.T) {
	got, err := parsePoolSpecs([]string{"base=10.1.0.0/16,size=24", "base=fd00::/48, size=64"})
	if err != nil || len(got) != 2 || got[0].Size != 24 || got[1].Base.String() != "fd00::/48" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"10.0.0.0/8", "base=10.0.0.0/8,size=4", "base=x,size=24", "base=10.0.0.0/8,size=24,color=red", "base=10.0.0.0/8", "base=::ffff:10.0.0.0/104,size=120"} {
		if _, err := parsePoolSpecs([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Two plugin instances (two "hosts") sharing one real etcd: the same global
// pool spans both, with one gateway and disjoint addresses.
func TestIpamGlobalSpaceAcrossHosts(t *testing.T) {
	srv := etcdtest.Start(t)
	endpoints := strings.Join(srv.Endpoints(), ",")
	sock := shortDir(t)
	ctx := context.Background()
	var clients []*ipam.Client
	state1 := shortDir(t)
	for i, name := range []string{"iph1", "iph2"} {
		state := state1
		if i > 0 {
			state = shortDir(t)
		}
		p := startBinary(t, nil, nil, "serve", "dockplug-ipam="+name, "--socket-dir", sock, "--state-dir", state,
			"--etcd-endpoints", endpoints)
		t.Cleanup(func() { p.stop(t) })
		clients = append(clients, ipamClient(t, sock, name))
	}
	var gws []string
	seen := map[string]bool{}
	for i, c := range clients {
		pool, err := c.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: "global", Pool: "10.200.0.0/24"})
		if err != nil {
			t.Fatalf("host %d join: %v", i, err)
		}
		gw, err := c.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: pool.PoolID,
			Options: map[string]string{ipam.OptRequestAddressType: ipam.Gateway}})
		if err != nil {
			t.Fatal(err)
		}
		gws = append(gws, gw.Address)
		for range 20 {
			a, err := c.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: pool.PoolID})
			if err != nil {
				t.Fatal(err)
			}
			if seen[a.Address] || a.Address == gw.Address {
				t.Fatalf("%s handed out twice across hosts", a.Address)
			}
			seen[a.Address] = true
		}
	}
	if gws[0] != gws[1] || gws[0] != "10.200.0.1/24" {
		t.Fatalf("gateways differ across hosts: %v", gws)
	}
	out, err := exec.Command(binary, "ipam", "ls", "--json", "--state-dir", state1, "--name", "iph1").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ls driver.PoolsResponse
	json.Unmarshal(out, &ls)
	if len(ls.Pools) != 1 || len(ls.Pools[0].Hosts) != 2 || ls.Pools[0].Allocated != 41 {
		t.Fatalf("ipam ls: %s", out)
	}
}

func TestIpamRefusesUnreachableEtcd(t *testing.T) {
	out, err := exec.Command(binary, "serve", "dockplug-ipam=ipnoetcd", "--socket-dir", shortDir(t), "--state-dir", shortDir(t),
		"--etcd-endpoints", "127.0.0.1:1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unreachable") {
		t.Fatalf("unreachable etcd: %v\n%s", err, out)
	}
}

// An empty host-id file (as power loss could leave one written without
// fsync) refuses the start, naming the file, instead of making a new host.
func TestIpamRefusesDamagedHostID(t *testing.T) {
	state := shortDir(t)
	path := filepath.Join(state, "iphid", driver.HostIDFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := shortDir(t)
	p := startBinary(t, nil, nil, "serve", "dockplug-ipam=iphid", "--socket-dir", sock, "--state-dir", state)
	// It must exit; its socket appearing means it started instead.
	for exited := false; !exited; {
		select {
		case err := <-p.done:
			if out := p.stderr.String(); err == nil || !strings.Contains(out, path) || !strings.Contains(out, "damaged") {
				t.Fatalf("damaged host-id: %v\n%s", err, out)
			}
			exited = true
		case <-time.After(10 * time.Millisecond):
			if _, err := os.Stat(filepath.Join(sock, "iphid.sock")); err == nil {
				t.Fatalf("started on an empty host-id file:\n%s", p.stderr)
			}
		}
	}
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Fatalf("damaged host-id replaced by %q", b)
	}
}

// --ipam-default-pool with IPv4 pools only keeps the IPv6 ULA default, as
// dockerd's default-address-pools does: --ipv6 without --subnet works.
func TestIpamIPv4DefaultPoolKeepsULA(t *testing.T) {
	sock := shortDir(t)
	p := startBinary(t, nil, nil, "serve", "dockplug-ipam=ipula", "--socket-dir", sock, "--state-dir", shortDir(t),
		"--ipam-host-id", "ula-host", "--ipam-default-pool", "base=10.66.0.0/16,size=24")
	t.Cleanup(func() { p.stop(t) })
	c := ipamClient(t, sock, "ipula")
	ctx := context.Background()
	v4, err := c.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: "local"})
	if err != nil || !netip.MustParsePrefix("10.66.0.0/16").Contains(netip.MustParsePrefix(v4.Pool).Addr()) {
		t.Fatalf("IPv4 dynamic pool %+v %v, want one of 10.66.0.0/16", v4, err)
	}
	v6, err := c.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: "local", V6: true})
	if err != nil {
		t.Fatalf("IPv6 dynamic pool with IPv4 default pools only: %v", err)
	}
	if ula := alloc.DeriveULAPool("ula-host").Base; !ula.Contains(netip.MustParsePrefix(v6.Pool).Addr()) || netip.MustParsePrefix(v6.Pool).Bits() != 64 {
		t.Fatalf("IPv6 dynamic pool %s, want a /64 of the ULA %s", v6.Pool, ula)
	}
}
