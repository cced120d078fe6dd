package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/mounts"
)

type env struct {
	dir    string
	allow  string
	drv    *Driver
	client *volume.Client
	stop   func()
}

func start(t *testing.T, dir, allow string) *env {
	t.Helper()
	d, err := New(context.Background(), Config{StateDir: dir, AllowedPaths: []string{allow}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := plugintest.Start("localvol", volume.NewHandler(d))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: dir, allow: allow, drv: d, client: volume.NewClient(r.Client)}
	e.stop = func() { r.Stop(); os.RemoveAll(r.SocketDir); d.Close() }
	return e
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	dir, allow := t.TempDir(), t.TempDir()
	e := start(t, dir, allow)
	t.Cleanup(func() {
		e.stop()
		live, _ := mounts.MountPoints()
		for mp := range live {
			if strings.HasPrefix(mp, dir+"/") {
				syscall.Unmount(mp, syscall.MNT_DETACH)
				t.Errorf("test left a mount behind: %s", mp)
			}
		}
	})
	return e
}

func statusOf(err error) int {
	var se *plugin.StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

func TestCreateWithOptionsGetListRemove(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	opts := map[string]string{"uid": "1000", "gid": "1001", "mode": "0750"}
	if err := e.client.Create(ctx, &volume.CreateRequest{Name: "data", Opts: opts}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(e.dir, "volumes", "data", "_data"))
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode().Perm() != 0o750 || sys.Uid != 1000 || sys.Gid != 1001 {
		t.Fatalf("data dir mode %v uid %d gid %d", st.Mode().Perm(), sys.Uid, sys.Gid)
	}
	// Idempotent for the same options; a conflict for others.
	if err := e.client.Create(ctx, &volume.CreateRequest{Name: "data", Opts: opts}); err != nil {
		t.Fatalf("repeat create: %v", err)
	}
	if err := e.client.Create(ctx, &volume.CreateRequest{Name: "data"}); statusOf(err) != 409 {
		t.Fatalf("create with other options: %v", err)
	}
	g, err := e.client.Get(ctx, &volume.GetRequest{Name: "data"})
	if err != nil {
		t.Fatal(err)
	}
	v := g.Volume
	if v.Name != "data" || time.Since(v.CreatedAt) > time.Minute || v.Status["mounts"] != float64(0) ||
		v.Status["options"].(map[string]any)["mode"] != "0750" {
		t.Fatalf("get: %+v", v)
	}
	if _, err := e.client.Get(ctx, &volume.GetRequest{Name: "nope"}); !volume.IsNoSuchVolume(err) || statusOf(err) != 404 {
		t.Fatalf("get missing: %v", err)
	}
	e.client.Create(ctx, &volume.CreateRequest{Name: "second"})
	l, err := e.client.List(ctx)
	if err != nil || len(l.Volumes) != 2 {
		t.Fatalf("list: %+v %v", l, err)
	}
	if err := e.client.Remove(ctx, &volume.RemoveRequest{Name: "data"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "volumes", "data")); !os.IsNotExist(err) {
		t.Fatalf("data left after remove: %v", err)
	}
	if err := e.client.Remove(ctx, &volume.RemoveRequest{Name: "data"}); statusOf(err) != 404 {
		t.Fatalf("remove missing: %v", err)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(e.allow, "escape"))
	os.WriteFile(filepath.Join(e.allow, "file"), nil, 0o644)
	cases := []struct {
		name string
		opts map[string]string
		msg  string
	}{
		{"a/b", nil, "invalid volume name"},
		{"..", nil, "invalid volume name"},
		{"a..b", nil, "invalid volume name"},
		{"-x", nil, "invalid volume name"},
		{"ok1", map[string]string{"size": "1G"}, "unknown option(s) size; known options: gid, mode, path, uid"},
		{"ok2", map[string]string{"uid": "-3"}, "option uid"},
		{"ok3", map[string]string{"mode": "999"}, "option mode"},
		{"ok4", map[string]string{"path": "/etc"}, "not under an allowed path"},
		{"ok5", map[string]string{"path": filepath.Join(e.allow, "escape")}, "not under an allowed path"},
		{"ok6", map[string]string{"path": "relative"}, "absolute"},
		{"ok7", map[string]string{"path": filepath.Join(e.allow, "file")}, "not a directory"},
		{"ok8", map[string]string{"path": filepath.Join(e.allow, "missing")}, "no such file"},
		{"ok9", map[string]string{"path": e.allow, "uid": "1"}, "apply to new directories"},
	}
	for _, c := range cases {
		err := e.client.Create(ctx, &volume.CreateRequest{Name: c.name, Opts: c.opts})
		if statusOf(err) != 400 || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("create %s %v: %v, want 400 %q", c.name, c.opts, err, c.msg)
		}
	}
	l, _ := e.client.List(ctx)
	entries, _ := os.ReadDir(filepath.Join(e.dir, "volumes"))
	if len(l.Volumes) != 0 || len(entries) != 0 {
		t.Fatalf("bad input left state: %d volumes, %d dirs", len(l.Volumes), len(entries))
	}
}

func TestHostPathVolumeKeepsDataOnRemove(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	host := filepath.Join(e.allow, "shared")
	os.Mkdir(host, 0o755)
	os.WriteFile(filepath.Join(host, "keep"), []byte("x"), 0o644)
	if err := e.client.Create(ctx, &volume.CreateRequest{Name: "hp", Opts: map[string]string{"path": host}}); err != nil {
		t.Fatal(err)
	}
	m, err := e.client.Mount(ctx, &volume.MountRequest{Name: "hp", ID: "id1"})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(m.Mountpoint, "keep")); err != nil || string(b) != "x" {
		t.Fatalf("host data not visible at the mount point: %v", err)
	}
	if err := e.client.Remove(ctx, &volume.RemoveRequest{Name: "hp"}); statusOf(err) != 409 {
		t.Fatalf("remove while mounted: %v", err)
	}
	if err := e.client.Unmount(ctx, &volume.UnmountRequest{Name: "hp", ID: "id1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Remove(ctx, &volume.RemoveRequest{Name: "hp"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(host, "keep")); err != nil {
		t.Fatalf("host data deleted by remove: %v", err)
	}
}

func TestMountPathAndStateSurviveRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.client.Create(ctx, &volume.CreateRequest{Name: "vol"})
	m, err := e.client.Mount(ctx, &volume.MountRequest{Name: "vol", ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(m.Mountpoint, "f"), []byte("hello"), 0o644)
	if p, _ := e.client.Path(ctx, &volume.PathRequest{Name: "vol"}); p.Mountpoint != m.Mountpoint {
		t.Fatalf("path while mounted: %+v", p)
	}
	// Restart the plugin with the mount held (the kernel mount stays).
	e.stop()
	e2 := start(t, e.dir, e.allow)
	e.stop = e2.stop
	g, err := e2.client.Get(ctx, &volume.GetRequest{Name: "vol"})
	if err != nil || g.Volume.Status["mounts"] != float64(1) {
		t.Fatalf("after restart: %+v %v", g, err)
	}
	if err := e2.client.Unmount(ctx, &volume.UnmountRequest{Name: "vol", ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if p, _ := e2.client.Path(ctx, &volume.PathRequest{Name: "vol"}); p.Mountpoint != "" {
		t.Fatalf("path after unmount: %+v", p)
	}
	if b, _ := os.ReadFile(filepath.Join(e.dir, "volumes", "vol", "_data", "f")); string(b) != "hello" {
		t.Fatal("data written through the mount is not in the volume")
	}
	if _, err := e2.client.Mount(ctx, &volume.MountRequest{Name: "zz", ID: "c1"}); statusOf(err) != 404 {
		t.Fatalf("mount of a missing volume: %v", err)
	}
}

// mountinfo lists resolved paths: a state dir reached through a symlink
// must still be recognised as mounted, or mounts would pile up.
func TestStateDirThroughSymlink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	real, allow := t.TempDir(), t.TempDir()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	e := start(t, link, allow)
	defer e.stop()
	ctx := context.Background()
	e.client.Create(ctx, &volume.CreateRequest{Name: "vol"})
	for _, id := range []string{"a", "b"} {
		if _, err := e.client.Mount(ctx, &volume.MountRequest{Name: "vol", ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a", "b"} {
		if err := e.client.Unmount(ctx, &volume.UnmountRequest{Name: "vol", ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	live, _ := mounts.MountPoints()
	for mp := range live {
		if strings.HasPrefix(mp, real+"/") {
			syscall.Unmount(mp, syscall.MNT_DETACH)
			t.Errorf("mount left behind: %s", mp)
		}
	}
}

// mode= takes the setuid, setgid and sticky bits too: a shared scratch
// volume is 1777, a group directory 2775.
func TestModeKeepsSpecialBits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, c := range []struct {
		opts map[string]string
		want uint32 // st_mode & 07777
	}{
		{map[string]string{"mode": "1777"}, 0o1777},
		{map[string]string{"mode": "2775", "gid": "1001"}, 0o2775},
		{map[string]string{"mode": "04750", "uid": "1000"}, 0o4750},
		{map[string]string{"mode": "7777", "uid": "1000", "gid": "1001"}, 0o7777},
		{map[string]string{"mode": "0700"}, 0o700},
	} {
		name := "m" + c.opts["mode"]
		if err := e.client.Create(ctx, &volume.CreateRequest{Name: name, Opts: c.opts}); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(e.dir, "volumes", name, "_data"), &st); err != nil {
			t.Fatal(err)
		}
		if got := st.Mode & 0o7777; got != c.want {
			t.Errorf("mode=%s %v: directory mode %04o, want %04o", c.opts["mode"], c.opts, got, c.want)
		}
	}
	err := e.client.Create(ctx, &volume.CreateRequest{Name: "big", Opts: map[string]string{"mode": "10000"}})
	if statusOf(err) != 400 || !strings.Contains(err.Error(), `option mode="10000": more than 4 octal digits`) {
		t.Errorf("mode=10000: %v", err)
	}
}

// -o path= is checked at Create, but a container holding one volume can
// replace a directory inside the allowed prefix by a symlink before another
// volume on that path is mounted. Mount must refuse to follow it, mount
// nothing, and say why; so must the remount at start.
func TestMountRefusesPathSwappedForSymlink(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o600)
	os.Mkdir(filepath.Join(outside, "b"), 0o755)
	for _, d := range []string{"sub", "a/b"} {
		if err := os.MkdirAll(filepath.Join(e.allow, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, p := range map[string]string{"leaf": "sub", "deep": "a/b"} {
		if err := e.client.Create(ctx, &volume.CreateRequest{Name: name, Opts: map[string]string{"path": filepath.Join(e.allow, p)}}); err != nil {
			t.Fatal(err)
		}
	}
	// swap replaces allow/rel by a symlink to target; the returned func
	// puts the directory back.
	swap := func(rel, target string) func() {
		p := filepath.Join(e.allow, rel)
		if err := os.Rename(p, p+".orig"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return func() {
			os.Remove(p)
			if err := os.Rename(p+".orig", p); err != nil {
				t.Fatal(err)
			}
		}
	}
	refused := func(name, link string) {
		t.Helper()
		_, err := e.client.Mount(ctx, &volume.MountRequest{Name: name, ID: "c1"})
		if err == nil || !strings.Contains(err.Error(), filepath.Join(e.allow, link)+" is a symlink") {
			t.Errorf("mount %s through a symlink: %v, want a refusal naming %s", name, err, link)
		}
		if mounted, _ := mounts.MountPoints(); mounted[filepath.Join(e.dir, "mounts", name)] {
			t.Errorf("%s mounted through the symlink", name)
			if _, err := os.Stat(filepath.Join(e.dir, "mounts", name, "secret")); err == nil {
				t.Errorf("%s shows the symlink's target", name)
			}
			e.client.Unmount(ctx, &volume.UnmountRequest{Name: name, ID: "c1"})
		}
		if g, err := e.client.Get(ctx, &volume.GetRequest{Name: name}); err != nil || g.Volume.Status["mounts"] != float64(0) {
			t.Errorf("after the refused mount of %s: %+v %v", name, g, err)
		}
	}

	undo := swap("sub", outside)
	refused("leaf", "sub")
	undo()
	undo = swap("a", outside) // a component above the volume's directory
	refused("deep", "a")
	undo()

	// With the directories back, both mount; the remount at start (after a
	// reboot, say) is refused just the same.
	for _, name := range []string{"leaf", "deep"} {
		if _, err := e.client.Mount(ctx, &volume.MountRequest{Name: name, ID: "c1"}); err != nil {
			t.Fatal(err)
		}
	}
	e.stop()
	syscall.Unmount(filepath.Join(e.dir, "mounts", "leaf"), 0)
	undo = swap("sub", outside)
	e2 := start(t, e.dir, e.allow)
	e.stop = e2.stop
	if mounted, _ := mounts.MountPoints(); mounted[filepath.Join(e.dir, "mounts", "leaf")] {
		t.Error("the remount at start followed the symlink")
	}
	undo()
	for _, name := range []string{"leaf", "deep"} {
		if err := e2.client.Unmount(ctx, &volume.UnmountRequest{Name: name, ID: "c1"}); err != nil {
			t.Fatal(err)
		}
	}

	// A prefix the operator no longer allows is refused too.
	e2.stop()
	e3 := start(t, e.dir, t.TempDir())
	e.stop = e3.stop
	_, err := e3.client.Mount(ctx, &volume.MountRequest{Name: "leaf", ID: "c2"})
	if err == nil || !strings.Contains(err.Error(), "no longer under an allowed path") {
		t.Errorf("mount under a prefix no longer allowed: %v", err)
	}
}
