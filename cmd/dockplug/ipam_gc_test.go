package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/driver"
	"github.com/dockplug/dockplug/store/etcd/etcdtest"
)

// TestIpamGCThroughTheBinary: `dockplug ipam gc` lists the blocks of hosts
// gone, frees only with --apply and only those holding no address, and
// never touches the blocks of a host whose lease is alive.
func TestIpamGCThroughTheBinary(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.WithoutFsync())
	endpoints := strings.Join(srv.Endpoints(), ",")
	cli := srv.Client()
	ctx := t.Context()
	sock, stateA, stateB := shortDir(t), shortDir(t), shortDir(t)
	a := startBinary(t, nil, nil, "serve", "dockplug-ipam=ipgca", "--socket-dir", sock, "--state-dir", stateA,
		"--etcd-endpoints", endpoints, "--ipam-host-id", "host-a")
	t.Cleanup(func() { a.stop(t) })
	b := startBinary(t, nil, nil, "serve", "dockplug-ipam=ipgcb", "--socket-dir", sock, "--state-dir", stateB,
		"--etcd-endpoints", endpoints, "--ipam-host-id", "host-b", "--ipam-host-ttl", "1s")
	ca, cb := ipamClient(t, sock, "ipgca"), ipamClient(t, sock, "ipgcb")
	pool, err := ca.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: "global", Pool: "10.201.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cb.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: "global", Pool: "10.201.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	held, err := ca.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: pool.PoolID})
	if err != nil {
		t.Fatal(err)
	}
	// Left behind by hosts: ghost (gone long ago) and host-b (alive for now).
	blockKey := func(start string) string {
		b := netip.MustParseAddr(start).As4()
		return driver.DefaultGlobalPrefix + "blocks/10.201.0.0_24/" + hex.EncodeToString(b[:])
	}
	put := func(start, host string) {
		t.Helper()
		v := fmt.Sprintf(`{"host":%q,"block":"%s/28","at":"2026-01-01T00:00:00Z","nonce":"x"}`, host, start)
		if _, err := cli.Put(ctx, blockKey(start), v); err != nil {
			t.Fatal(err)
		}
	}
	put("10.201.0.128", "ghost")
	put("10.201.0.144", "host-b")
	exists := func(start string) bool {
		t.Helper()
		r, err := cli.Get(ctx, blockKey(start))
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Kvs) == 1
	}
	gc := func(args ...string) driver.GCResponse {
		t.Helper()
		out, err := exec.Command(binary, append([]string{"ipam", "gc", "--json", "--state-dir", stateA, "--name", "ipgca"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ipam gc %v: %v\n%s", args, err, out)
		}
		var res driver.GCResponse
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("ipam gc: %v\n%s", err, out)
		}
		return res
	}

	res := gc()
	if res.Applied || len(res.Blocks) != 1 || res.Blocks[0].Host != "ghost" || res.Blocks[0].Freed || !exists("10.201.0.128") {
		t.Fatalf("dry run: %+v", res)
	}
	out, err := exec.Command(binary, "ipam", "gc", "--state-dir", stateA, "--name", "ipgca").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "would free") || !strings.Contains(string(out), "--apply") {
		t.Fatalf("dry run, text: %v\n%s", err, out)
	}
	res = gc("--apply")
	if !res.Applied || len(res.Blocks) != 1 || !res.Blocks[0].Freed || exists("10.201.0.128") {
		t.Fatalf("apply: %+v", res)
	}
	if !exists("10.201.0.144") {
		t.Fatal("freed a block of a live host")
	}

	// host-b dies; once its lease expired, its empty block goes, and
	// host-a's block, which holds an address, stays.
	b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.done
	for {
		r, err := cli.Get(ctx, driver.DefaultGlobalPrefix+"hosts/host-b")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond) // the lease expires on etcd's clock
	}
	res = gc("--apply")
	if len(res.Blocks) != 1 || res.Blocks[0].Host != "host-b" || !res.Blocks[0].Freed || exists("10.201.0.144") {
		t.Fatalf("apply after host-b died: %+v", res)
	}
	if r, err := ca.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: pool.PoolID}); err != nil || r.Address == held.Address {
		t.Fatalf("host-a after gc: %v %v", r, err)
	}
}
