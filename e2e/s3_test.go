package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dockplug/dockplug/volume"
)

// End-to-end tests of dockplug-s3 (volume/s3, volume/s3fs) served by the
// real binary to a real dockerd, over a real versitygw and real FUSE
// mounts. Like the volume tests, they list with --filter driver=<plugin>
// (G3).

// TestS3CreateShareRemove: create with options, inspect (scope global,
// the plugin's Status), write from one container, read from a second,
// two containers at once (one mount process, two references), data in S3,
// remove deletes what the plugin created; a second host sees the volume.
func TestS3CreateShareRemove(t *testing.T) {
	s := setupS3(t)
	e := s.env
	v := e.vol("data")
	s.createS3(e, v, "uid=1000", "gid=1000", "mode=0750")
	info := e.inspect(v)
	if info.Scope != "global" || info.Driver != e.p.Name || info.Mountpoint != e.mountpoint(v) {
		t.Errorf("inspect: scope %q driver %q mountpoint %q", info.Scope, info.Driver, info.Mountpoint)
	}
	if info.Status["bucket"] != s.bucket || info.Status["prefix"] != v+"/" || info.Status["ownsData"] != true {
		t.Errorf("inspect: Status %v", info.Status)
	}
	if _, ok := s.object(".dockplug/volumes/" + v + ".json"); !ok {
		t.Fatal("no metadata object in the bucket")
	}

	e.run("--rm", "-v", v+":/d", image, "sh", "-c", "mkdir -p /d/dir && echo hello > /d/dir/f")
	e.waitRefs(v, 0)
	if got, _ := s.object(v + "/dir/f"); got != "hello\n" {
		t.Fatalf("object after the container exited: %q", got)
	}
	if out := e.run("--rm", "-v", v+":/d", image, "sh", "-c", "cat /d/dir/f; stat -c '%u %g %a' /d /d/dir/f"); out != "hello\n1000 1000 750\n1000 1000 640\n" {
		t.Errorf("second container reads %q", out)
	}

	// Two containers at once: one mount, two references.
	c := strings.TrimSpace(e.run("-d", "-v", v+":/d", image, "sleep", "300"))
	e.waitRefs(v, 1)
	pid := e.status(v)["mountPid"]
	e.run("--rm", "-v", v+":/d", image, "sh", "-c", "echo second >> /d/dir/f")
	if got := e.status(v)["mountPid"]; got != pid {
		t.Errorf("mount process %v, then %v: not shared", pid, got)
	}
	if out := e.docker("exec", c, "cat", "/d/dir/f"); out != "hello\nsecond\n" {
		t.Errorf("first container reads %q", out)
	}
	if _, err := e.dockerErr("volume", "rm", v); err == nil {
		t.Fatal("volume rm while in use succeeded")
	}

	// Another host (plugin instance with its own state dir) sees it.
	b := s.otherHost(t)
	bc := b.client()
	defer bc.Plugin().Close()
	g, err := bc.Get(context.Background(), &volume.GetRequest{Name: v})
	if err != nil || g.Volume.Status["bucket"] != s.bucket {
		t.Fatalf("other host's Get: %+v, %v", g, err)
	}
	ls, err := bc.List(context.Background())
	if err != nil || len(ls.Volumes) != 1 || ls.Volumes[0].Name != v {
		t.Fatalf("other host's List: %+v, %v", ls, err)
	}
	caps, err := bc.Capabilities(context.Background())
	if err != nil || caps.Capabilities.Scope != volume.ScopeGlobal {
		t.Fatalf("Capabilities: %+v, %v", caps, err)
	}

	e.docker("rm", "-f", c)
	e.waitRefs(v, 0)
	if fuseMounted(t, e.mountpoint(v)) {
		t.Fatal("still mounted after the last container")
	}
	e.docker("volume", "rm", v)
	if _, ok := s.object(v + "/dir/f"); ok {
		t.Error("volume rm left the data the plugin created")
	}
	if _, ok := s.object(".dockplug/volumes/" + v + ".json"); ok {
		t.Error("volume rm left the metadata")
	}
}

// TestS3Kill9PluginWhileStreaming: kill -9 of the plugin while a container
// streams writes: the container's I/O goes on (its mount process is in its
// own session), the restarted plugin re-adopts the process, and the data
// is complete in S3 after the container exits.
func TestS3Kill9PluginWhileStreaming(t *testing.T) {
	s := setupS3(t)
	e := s.env
	v := e.vol("stream")
	s.createS3(e, v)
	// Appends one line at a time until /d/stop appears, then says how many.
	c := strings.TrimSpace(e.run("-d", "-v", v+":/d", image, "sh", "-c",
		`i=0; while [ ! -e /d/stop ]; do i=$((i+1)); echo "line $i" >> /d/log; done; echo $i > /d/count`))
	e.waitRefs(v, 1)
	lines := func() int {
		out, err := e.dockerErr("exec", c, "sh", "-c", "wc -l < /d/log")
		if err != nil {
			return -1
		}
		n, _ := strconv.Atoi(strings.TrimSpace(out))
		return n
	}
	waitUntil(t, "the container to write", func() bool { return lines() > 5 })
	mountPid := e.status(v)["mountPid"]

	e.p.kill9(t)
	before := lines()
	waitUntil(t, "writes to go on with the plugin dead", func() bool { return lines() > before+5 })

	if err := e.p.start(); err != nil {
		t.Fatal(err)
	}
	st := e.status(v)
	if st["mountPid"] != mountPid || st["remounts"] != float64(0) {
		t.Errorf("after the restart: Status %v, want the re-adopted mount process %v", st, mountPid)
	}
	e.docker("exec", c, "touch", "/d/stop")
	if out := strings.TrimSpace(e.docker("wait", c)); out != "0" {
		t.Fatalf("container exited with %s", out)
	}
	e.waitRefs(v, 0)
	count, _ := s.object(v + "/count")
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil || n < 10 {
		t.Fatalf("count object %q", count)
	}
	log, _ := s.object(v + "/log")
	var want strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	if log != want.String() {
		t.Fatalf("log in S3 has %d bytes, want %d lines (%d bytes)", len(log), n, want.Len())
	}
}

// TestS3KillMountProcess: kill -9 of a volume's mount process is detected
// (the plugin watches it) and the volume is remounted and reported in
// Get's Status. The running container keeps the dead mount (ENOTCONN):
// a FUSE mount cannot be revived under a running container's bind mount.
// New containers get the new mount; the old one's stop unmounts cleanly.
func TestS3KillMountProcess(t *testing.T) {
	s := setupS3(t)
	e := s.env
	v := e.vol("remount")
	s.createS3(e, v)
	e.run("--rm", "-v", v+":/d", image, "sh", "-c", "echo kept > /d/f")
	c := strings.TrimSpace(e.run("-d", "-v", v+":/d", image, "sleep", "300"))
	e.waitRefs(v, 1)
	pid, ok := e.status(v)["mountPid"].(float64)
	if !ok {
		t.Fatalf("no mountPid in %v", e.status(v))
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the remount", func() bool {
		st := e.status(v)
		p, _ := st["mountPid"].(float64)
		return st["remounts"] == float64(1) && p != 0 && p != pid
	})
	if last := fmt.Sprint(e.status(v)["lastDeath"]); !strings.Contains(last, "died") {
		t.Errorf("Status.lastDeath %q", last)
	}
	if _, err := e.dockerErr("exec", c, "cat", "/d/f"); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("old container on the dead mount: %v (expected ENOTCONN)", err)
	}
	if out := e.run("--rm", "-v", v+":/d", image, "cat", "/d/f"); out != "kept\n" {
		t.Errorf("new container reads %q", out)
	}
	e.docker("rm", "-f", c)
	e.waitRefs(v, 0)
	if fuseMounted(t, e.mountpoint(v)) {
		t.Error("still mounted after the last container")
	}
}

// TestS3DaemonRestart (G2, G9): dockerd restarts; it asks the plugin for
// every volume it knows, and they stay, with their data.
func TestS3DaemonRestart(t *testing.T) {
	s := setupS3(t)
	e := s.env
	v := e.vol("keep")
	s.createS3(e, v, "close=async")
	e.run("--rm", "-v", v+":/d", image, "sh", "-c", "echo kept > /d/f")
	e.waitRefs(v, 0)
	daemon.Restart(t)
	if got := e.volumes(); !slices.Equal(got, []string{v}) {
		t.Fatalf("after restart: volume ls %v", got)
	}
	if out := e.run("--rm", "-v", v+":/d", image, "cat", "/d/f"); out != "kept\n" {
		t.Errorf("after restart, a container reads %q", out)
	}
	e.waitRefs(v, 0)
}

// TestS3BadOptionsAndCredentials: wrong options, a bucket outside the
// allow-list, a bucket that does not exist and wrong credentials give the
// plugin's own message through the docker CLI, and record nothing.
func TestS3BadOptionsAndCredentials(t *testing.T) {
	s := setupS3(t)
	e := s.env
	for i, c := range []struct {
		opts []string
		want string
	}{
		{[]string{"bucket=" + s.bucket, "size=1G"}, "unknown option(s) size; known options: bucket, cache, close, delete-data, gid, mode, prefix, profile, staged-max, uid"},
		{nil, "option bucket is required (-o bucket=NAME)"},
		{[]string{"bucket=" + s.bucket, "close=later"}, `option close="later"`},
		{[]string{"bucket=elsewhere"}, "bucket elsewhere prefix "},
		{[]string{"bucket=" + s.bucket, "profile=wrong"}, "refused profile wrong's credentials for bucket " + s.bucket},
		{[]string{"bucket=" + s.bucket, "profile=nope"}, `no S3 profile "nope"`},
	} {
		name := e.vol(fmt.Sprintf("bad%d", i))
		args := []string{"volume", "create", "-d", e.p.Name, "--label", e.label}
		for _, o := range c.opts {
			args = append(args, "-o", o)
		}
		_, err := e.dockerErr(append(args, name)...)
		if err == nil || !strings.Contains(err.Error(), "VolumeDriver.Create: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v\nwant it to contain %q", c.opts, err, c.want)
		}
		if _, ok := s.object(".dockplug/volumes/" + name + ".json"); ok {
			t.Errorf("%v: metadata recorded anyway", c.opts)
		}
	}
	if got := e.volumes(); len(got) != 0 {
		t.Errorf("volume ls: %v", got)
	}
	if got := e.pluginVolumes(); len(got) != 0 {
		t.Errorf("plugin List: %v", got)
	}
}

// TestS3ConfigMustBePrivate: the plugin refuses to start with a config
// file others may read, saying why.
func TestS3ConfigMustBePrivate(t *testing.T) {
	need(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "s3.yaml")
	if err := os.WriteFile(cfg, []byte("allow-buckets: [media]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(cfg, 0o644)
	name := "dps3-mode-" + randHex(4)
	out, err := exec.Command(binary, "serve", "dockplug-s3="+name, "--state-dir", dir, "--s3-config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is mode 0644, but it holds credentials: it must be 0600 or stricter") {
		t.Fatalf("serve with a 0644 config: %v\n%s", err, out)
	}
	if _, err := os.Lstat(socketPath(name)); err == nil {
		t.Fatal("a socket was made")
	}
	out, err = exec.Command(binary, "serve", "dockplug-s3="+name, "--state-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "dockplug-s3 needs --s3-config FILE") {
		t.Fatalf("serve without a config: %v\n%s", err, out)
	}
}
