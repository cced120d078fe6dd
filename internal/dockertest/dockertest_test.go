package dockertest

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRefersTo(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"/tmp/dt1", true},
		{"--data-root=/tmp/dt1/root", true},
		{"/tmp/dt12", false},
		{"/tmp/dt12 /tmp/dt1", true},
		{"/tmp/dt", false},
	} {
		if got := refersTo(tc.s, "/tmp/dt1"); got != tc.want {
			t.Errorf("refersTo(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestUnescapeMountPath(t *testing.T) {
	if got := unescapeMountPath(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Errorf("got %q", got)
	}
}

func TestDaemon(t *testing.T) {
	Skip(t)
	d := Start(t)
	img := d.Image(t)
	t.Logf("storage driver %q, bridge %s %s", d.StorageDriver, d.Bridge, d.Subnet)

	t.Run("ping", func(t *testing.T) {
		if err := d.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("echo", func(t *testing.T) {
		if out := d.Run(t, "--rm", img, "echo", "hello dockplug"); out != "hello dockplug\n" {
			t.Fatalf("output %q", out)
		}
	})

	t.Run("network", func(t *testing.T) {
		out := d.Run(t, "--rm", img, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
		m := regexp.MustCompile(`inet (\d+\.\d+\.\d+\.\d+)/\d+`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no IPv4 address on eth0: %q", out)
		}
		ip, err := netip.ParseAddr(m[1])
		if err != nil || !d.Subnet.Contains(ip) {
			t.Fatalf("eth0 address %s not in bridge subnet %s", m[1], d.Subnet)
		}
	})

	t.Run("docker error", func(t *testing.T) {
		_, err := d.Docker(context.Background(), "inspect", "no-such-container")
		if err == nil || !strings.Contains(err.Error(), "inspect no-such-container") || !strings.Contains(err.Error(), "No such") {
			t.Fatalf("error should name the args and carry stderr: %v", err)
		}
	})

	t.Run("restart", func(t *testing.T) {
		d.Run(t, "--name", "keepme", img, "true")
		oldPid := d.Pid()
		d.Restart(t)
		if d.Pid() == oldPid || d.Pid() == 0 {
			t.Fatalf("dockerd pid %d after restart, was %d", d.Pid(), oldPid)
		}
		out := d.MustDocker(t, "ps", "-a", "--filter", "name=^keepme$", "--format", "{{.Names}}")
		if strings.TrimSpace(out) != "keepme" {
			t.Fatalf("container not listed after restart: %q", out)
		}
		// The image survives too, and containers still run.
		if out := d.Run(t, "--rm", d.Image(t), "echo", "again"); out != "again\n" {
			t.Fatalf("output after restart %q", out)
		}
	})
}

// TestTeardown checks that cleanup leaves nothing behind while a container
// is running, using the TestMain entry point.
func TestTeardown(t *testing.T) {
	Skip(t)
	d, cleanup, err := StartMain()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup) // no-op after the explicit call below
	d.Run(t, "-d", d.Image(t), "sleep", "1000")
	if len(procsReferencing(d.Dir, isDockerProc)) < 2 {
		t.Fatal("expected containerd and a shim referring to the daemon dir")
	}
	if ms, _ := mountsUnder(d.Dir); len(ms) == 0 {
		t.Fatal("expected mounts under the daemon dir")
	}
	pid := d.Pid()
	cleanup()
	assertGone(t, d.Dir, d.Bridge, pid)
}

// TestTeardownAfterCrash kills dockerd so that containerd, the shim, the
// container and its mounts are left for the forced cleanup.
func TestTeardownAfterCrash(t *testing.T) {
	Skip(t)
	d := Start(t)
	id := strings.TrimSpace(d.Run(t, "-d", d.Image(t), "sleep", "1000"))
	cpid := strings.TrimSpace(d.MustDocker(t, "inspect", "-f", "{{.State.Pid}}", id))
	shimSock := shimSocket(t, filepath.Join(d.ExecRoot, "containerd", "daemon", "io.containerd.runtime.v2.task", "moby", id))
	pid := d.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	<-p.done
	start := time.Now()
	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	t.Logf("forced teardown took %v", time.Since(start))
	assertGone(t, d.Dir, d.Bridge, pid)
	if n, err := strconv.Atoi(cpid); err != nil || alive(n) {
		t.Errorf("container process %q still running (%v)", cpid, err)
	}
	if _, err := os.Stat(shimSock); !os.IsNotExist(err) {
		t.Errorf("shim socket %s left behind (%v)", shimSock, err)
	}
}

// TestReapStale fakes the remains of a test process that died without
// teardown and checks that the next start removes them.
func TestReapStale(t *testing.T) {
	Skip(t)
	dir, err := os.MkdirTemp("/tmp", "dt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = forceCleanup(dir, "") })
	bridge, err := pickBridgeName()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", bridge).Run() })
	if _, _, err := createBridge(bridge); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "root", "m")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	// pid 1 with a start time it cannot have: the owner is "gone".
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte("1 999999999999 "+bridge+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A dir of a live owner must survive.
	live, err := os.MkdirTemp("/tmp", "dt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(live) })
	if err := writeOwner(live, "dtnone"); err != nil {
		t.Fatal(err)
	}

	reapStale(t.Logf)
	assertGone(t, dir, bridge, 0)
	if _, err := os.Stat(live); err != nil {
		t.Errorf("dir of live owner was reaped: %v", err)
	}
}

func assertGone(t *testing.T, dir, bridge string, pid int) {
	t.Helper()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists (%v)", dir, err)
	}
	if ms, err := mountsUnder(dir); err != nil || len(ms) > 0 {
		t.Errorf("mounts left under %s: %v %v", dir, ms, err)
	}
	if _, err := net.InterfaceByName(bridge); err == nil {
		t.Errorf("bridge %s still exists", bridge)
	}
	if pids := procsReferencing(dir, func(string) bool { return true }); len(pids) > 0 {
		t.Errorf("processes still refer to %s: %v", dir, pids)
	}
	if pid != 0 && alive(pid) {
		t.Errorf("dockerd %d still running", pid)
	}
}

// shimSocket reads the shim's socket from its bundle: containerd 1.x
// (20.10) writes an "address" file, containerd 2 (Engine 29) a
// "bootstrap.json" with the address in it.
func shimSocket(t *testing.T, bundle string) string {
	t.Helper()
	var addr string
	if b, err := os.ReadFile(filepath.Join(bundle, "address")); err == nil {
		addr = strings.TrimSpace(string(b))
	} else if b, err := os.ReadFile(filepath.Join(bundle, "bootstrap.json")); err == nil {
		var boot struct{ Address string }
		if err := json.Unmarshal(b, &boot); err != nil {
			t.Fatalf("%s/bootstrap.json: %v", bundle, err)
		}
		addr = boot.Address
	} else {
		ents, _ := os.ReadDir(bundle)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("no shim address in %s (has %v)", bundle, names)
	}
	if addr == "" {
		t.Fatalf("empty shim address in %s", bundle)
	}
	return strings.TrimPrefix(addr, "unix://")
}
