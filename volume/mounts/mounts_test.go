package mounts

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/dockplug/dockplug/store/bolt"
	bbolt "go.etcd.io/bbolt"
)

// bindMounter bind-mounts dir/data/NAME on dir/mnt/NAME: real mounts.
type bindMounter struct {
	dir      string
	mounts   int
	unmounts int
}

func (b *bindMounter) Root() string               { return filepath.Join(b.dir, "mnt") }
func (b *bindMounter) Mountpoint(n string) string { return filepath.Join(b.Root(), n) }
func (b *bindMounter) Mount(ctx context.Context, n string) error {
	src := filepath.Join(b.dir, "data", n)
	os.MkdirAll(src, 0o755)
	os.MkdirAll(b.Mountpoint(n), 0o755)
	b.mounts++
	return syscall.Mount(src, b.Mountpoint(n), "", syscall.MS_BIND, "")
}
func (b *bindMounter) Unmount(ctx context.Context, n string) error {
	b.unmounts++
	return syscall.Unmount(b.Mountpoint(n), 0)
}

func setup(t *testing.T) (*bindMounter, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	dir := t.TempDir()
	b := &bindMounter{dir: dir}
	t.Cleanup(func() {
		live, _ := MountPoints()
		for mp := range live {
			if strings.HasPrefix(mp, dir+"/") {
				syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
	})
	return b, filepath.Join(dir, "state.db")
}

func open(t *testing.T, path string, m Mounter) (*Table, *bbolt.DB) {
	t.Helper()
	db, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := New(db, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tb, db
}

func mounted(t *testing.T, p string) bool {
	t.Helper()
	ok, err := isMounted(p)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// G1: docker cp sends extra Mount/Unmount pairs with the running
// container's ID; docker create sends a pair with a fresh ID. The mount must
// stay until the very last reference goes.
func TestRefcountPerIDIsACounter(t *testing.T) {
	b, path := setup(t)
	tb, db := open(t, path, b)
	defer db.Close()
	ctx := context.Background()
	mp, err := tb.Mount(ctx, "v", "ctr1")
	if err != nil || mp != b.Mountpoint("v") || !mounted(t, mp) {
		t.Fatalf("mount: %q %v", mp, err)
	}
	tb.Mount(ctx, "v", "ctr1") // docker cp into the running container
	tb.Mount(ctx, "v", "ctr2") // a second container
	if n, _ := tb.Count("v"); n != 3 || b.mounts != 1 {
		t.Fatalf("count %d, real mounts %d", n, b.mounts)
	}
	for _, id := range []string{"ctr1", "ctr2", "ctr1"} {
		if !mounted(t, mp) {
			t.Fatalf("unmounted while references remain (before releasing %s)", id)
		}
		if err := tb.Unmount(ctx, "v", id); err != nil {
			t.Fatal(err)
		}
	}
	if mounted(t, mp) || b.unmounts != 1 {
		t.Fatalf("still mounted after the last reference, or unmounted %d times", b.unmounts)
	}
	// A stray Unmount is harmless and does not unmount anything.
	if err := tb.Unmount(ctx, "v", "ctr1"); err != nil || b.unmounts != 1 {
		t.Fatalf("stray unmount: %v, %d", err, b.unmounts)
	}
}

func TestReferencesSurviveReopen(t *testing.T) {
	b, path := setup(t)
	tb, db := open(t, path, b)
	ctx := context.Background()
	tb.Mount(ctx, "v", "a")
	tb.Mount(ctx, "v", "a")
	db.Close() // as after kill -9: the kernel mount stays, the process is gone
	tb, db = open(t, path, b)
	defer db.Close()
	refs, _ := tb.Refs("v")
	if refs["a"] != 2 {
		t.Fatalf("refs after reopen: %v", refs)
	}
	repaired, err := tb.Reconcile(ctx)
	if err != nil || len(repaired) != 0 {
		t.Fatalf("reconcile of a consistent state: %v %v", repaired, err)
	}
	tb.Unmount(ctx, "v", "a")
	tb.Unmount(ctx, "v", "a")
	if mounted(t, b.Mountpoint("v")) {
		t.Fatal("not unmounted after the restored references were released")
	}
}

func TestReconcileRepairsBothWays(t *testing.T) {
	b, path := setup(t)
	tb, db := open(t, path, b)
	defer db.Close()
	ctx := context.Background()
	// A reference whose mount vanished (e.g. a reboot).
	tb.Mount(ctx, "held", "id1")
	syscall.Unmount(b.Mountpoint("held"), 0)
	// A mount the driver made with no reference (a crash between a mount
	// and its record, or between a release and its unmount).
	b.Mount(ctx, "stray")
	// A mount outside the driver's root is never touched.
	other := filepath.Join(b.dir, "elsewhere")
	os.MkdirAll(other, 0o755)
	syscall.Mount(b.dir+"/data", other, "", syscall.MS_BIND, "")
	repaired, err := tb.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(repaired, ",") != "mounted held,unmounted stray" {
		t.Fatalf("repaired: %v", repaired)
	}
	if !mounted(t, b.Mountpoint("held")) || mounted(t, b.Mountpoint("stray")) || !mounted(t, other) {
		t.Fatal("kernel state not reconciled")
	}
}

func TestFailedMountDropsItsReference(t *testing.T) {
	b, path := setup(t)
	tb, db := open(t, path, failing{b})
	defer db.Close()
	if _, err := tb.Mount(context.Background(), "v", "x"); err == nil {
		t.Fatal("mount error not returned")
	}
	if n, _ := tb.Count("v"); n != 0 {
		t.Fatalf("reference kept after a failed mount: %d", n)
	}
}

type failing struct{ *bindMounter }

func (failing) Mount(context.Context, string) error { return syscall.EPERM }

func TestParseMountInfoUnescapes(t *testing.T) {
	in := "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n" +
		"37 35 98:0 / /plain rw - ext4 /dev/x rw\nshort line\n" +
		// Not escaped by the kernel, yet white space to strings.Fields.
		"38 35 98:0 / /mnt/cr\rnbsp\u00a0nel\u0085 rw - ext4 /dev/x rw\n"
	m, err := parseMountInfo(strings.NewReader(in))
	if err != nil || !m["/mnt/with space"] || !m["/plain"] || !m["/mnt/cr\rnbsp\u00a0nel\u0085"] || len(m) != 3 {
		t.Fatalf("%v %v", m, err)
	}
}

// call is one Mount or Unmount of volume "v" with a mount ID.
type call struct{ op, id string }

func (c call) do(ctx context.Context, tb *Table) error {
	switch c.op {
	case "mount":
		_, err := tb.Mount(ctx, "v", c.id)
		return err
	case "unmount":
		return tb.Unmount(ctx, "v", c.id)
	}
	return fmt.Errorf("unknown op %q", c.op)
}

// kstate is what survives a crash: the references in the file and whether
// the kernel has the volume mounted.
type kstate struct {
	refs    map[string]int
	mounted bool
}

func (k kstate) String() string { return fmt.Sprintf("refs %v, mounted %v", k.refs, k.mounted) }

func stateOf(t *testing.T, tb *Table, b *bindMounter) kstate {
	t.Helper()
	r, err := tb.Refs("v")
	if err != nil {
		t.Fatal(err)
	}
	return kstate{r, mounted(t, b.Mountpoint("v"))}
}

func (k kstate) equal(o kstate) bool { return maps.Equal(k.refs, o.refs) && k.mounted == o.mounted }

// crashChildEnv makes the test binary, run again by crash, the plugin
// process that dies: "DIR op id" is the call it makes on DIR/state.db.
const crashChildEnv = "DOCKPLUG_MOUNTS_CRASH_CHILD"

// TestCrashChild is not a test: it is the process crash kills.
func TestCrashChild(t *testing.T) {
	v := os.Getenv(crashChildEnv)
	if v == "" {
		t.Skip("helper process of TestCrashWindows")
	}
	f := strings.Fields(v)
	b := &bindMounter{dir: f[0]}
	tb, db := open(t, filepath.Join(f[0], "state.db"), b)
	defer db.Close()
	err := call{f[1], f[2]}.do(context.Background(), tb)
	t.Fatalf("the call returned (%v): its fault point was never reached", err)
}

// crash makes c in another process, which the test-only fault hook stops
// at point (DOCKPLUG_TEST_FAULT=point:pause), and kill -9s it there: no
// deferred function, no cleanup runs, as in a real crash. Its mounts stay.
func crash(t *testing.T, dir string, c call, point string) {
	t.Helper()
	runtime.LockOSThread() // Pdeathsig follows the thread that forks
	defer runtime.UnlockOSThread()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir+" "+c.op+" "+c.id, EnvFault+"="+point+":pause")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, out bytes.Buffer
	cmd.Stdout = &stdout // apart: the copy to it runs in another goroutine
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	paused := false
	sc := bufio.NewScanner(stderr)
	for !paused && sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		paused = sc.Text() == "dockplug: test fault: paused at "+point
	}
	if paused {
		cmd.Process.Kill()
	}
	io.Copy(&out, stderr)
	err = cmd.Wait()
	out.Write(stdout.Bytes())
	if !paused {
		t.Fatalf("%s %s never reached %s (%v):\n%s", c.op, c.id, point, err, out.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child not killed at %s: %v\n%s", point, err, out.String())
	}
}

// TestCrashWindows kills the process inside Mount and Unmount at every
// point where a crash leaves a different state, then starts afresh on the
// same state file and mount root, as the plugin does after kill -9, and
// checks that Reconcile brings the state to what the daemon believes:
//
//   - A Mount that crashed never answered, so the daemon counts it failed
//     and will never send its Unmount: it must leave no reference and no
//     mount, except after the reference was recorded (the known limit: the
//     reference stays, and is dropped by hand).
//   - An Unmount is never sent again either, whether it succeeded or not
//     (the daemon logs the error and goes on): once its release is durable
//     it is done, and the next start finishes the unmount it began. Before
//     that, it is as if the plugin had been down when the daemon sent it:
//     the reference stays (the same known limit).
//
// In every case the volume must then stay usable: the references left are
// released one by one, after which nothing is mounted.
func TestCrashWindows(t *testing.T) {
	mountA, mountB := call{"mount", "a"}, call{"mount", "b"}
	unmountA := call{"unmount", "a"}
	none := map[string]int{}
	for _, c := range []struct {
		name   string
		before []call // made and answered before the crash
		crash  call   // the call the process dies in
		point  string
		left   kstate // what the crash leaves
		want   kstate // after Reconcile at the next start
	}{
		// First reference: the call has to mount.
		{"first mount/before anything", nil, mountA, FaultMountBegin, kstate{none, false}, kstate{none, false}},
		{"first mount/mounted, not recorded", nil, mountA, FaultMountAfterMount, kstate{none, true}, kstate{none, false}},
		{"first mount/recorded, not answered (known limit)", nil, mountA, FaultMountAfterRecord, kstate{map[string]int{"a": 1}, true}, kstate{map[string]int{"a": 1}, true}},
		// Another reference on a mounted volume.
		{"second ref/not recorded", []call{mountA}, mountB, FaultMountAfterMount, kstate{map[string]int{"a": 1}, true}, kstate{map[string]int{"a": 1}, true}},
		{"second ref/recorded, not answered (known limit)", []call{mountA}, mountB, FaultMountAfterRecord, kstate{map[string]int{"a": 1, "b": 1}, true}, kstate{map[string]int{"a": 1, "b": 1}, true}},
		// Releasing one of two references: no real unmount.
		{"non-last unmount/before anything (known limit)", []call{mountA, mountB}, unmountA, FaultUnmountBegin, kstate{map[string]int{"a": 1, "b": 1}, true}, kstate{map[string]int{"a": 1, "b": 1}, true}},
		{"non-last unmount/recorded", []call{mountA, mountB}, unmountA, FaultUnmountAfterRecord, kstate{map[string]int{"b": 1}, true}, kstate{map[string]int{"b": 1}, true}},
		{"non-last unmount/not answered", []call{mountA, mountB}, unmountA, FaultUnmountAfterUnmount, kstate{map[string]int{"b": 1}, true}, kstate{map[string]int{"b": 1}, true}},
		{"non-last unmount of a repeated ID/recorded", []call{mountA, mountA}, unmountA, FaultUnmountAfterRecord, kstate{map[string]int{"a": 1}, true}, kstate{map[string]int{"a": 1}, true}},
		// Releasing the last reference: the call has to unmount.
		{"last unmount/before anything (known limit)", []call{mountA}, unmountA, FaultUnmountBegin, kstate{map[string]int{"a": 1}, true}, kstate{map[string]int{"a": 1}, true}},
		{"last unmount/recorded, not unmounted", []call{mountA}, unmountA, FaultUnmountAfterRecord, kstate{none, true}, kstate{none, false}},
		{"last unmount/unmounted, not answered", []call{mountA}, unmountA, FaultUnmountAfterUnmount, kstate{none, false}, kstate{none, false}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, path := setup(t)
			ctx := context.Background()
			tb, db := open(t, path, b)
			for _, bc := range c.before {
				if err := bc.do(ctx, tb); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()

			crash(t, b.dir, c.crash, c.point)

			tb, db = open(t, path, b)
			defer db.Close()
			if got := stateOf(t, tb, b); !got.equal(c.left) {
				t.Errorf("the crash left %v, want %v", got, c.left)
			}
			if _, err := tb.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			if got := stateOf(t, tb, b); !got.equal(c.want) {
				t.Fatalf("after Reconcile: %v, want %v", got, c.want)
			}
			// Still usable: release what is left, as the daemon (or
			// dockplug volume release) would.
			for id, n := range c.want.refs {
				for range n {
					if err := tb.Unmount(ctx, "v", id); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := stateOf(t, tb, b); !got.equal(kstate{none, false}) {
				t.Fatalf("after releasing every reference: %v", got)
			}
		})
	}
}

// A failed real unmount puts the reference back: the volume stays mounted
// and accounted for (the daemon keeps its mount active too), and a later
// release can unmount it.
func TestFailedUnmountKeepsItsReference(t *testing.T) {
	b, path := setup(t)
	tb, db := open(t, path, stuck{b})
	ctx := context.Background()
	if _, err := tb.Mount(ctx, "v", "a"); err != nil {
		t.Fatal(err)
	}
	if err := tb.Unmount(ctx, "v", "a"); err == nil {
		t.Fatal("unmount error not returned")
	}
	if got := stateOf(t, tb, b); !got.equal(kstate{map[string]int{"a": 1}, true}) {
		t.Fatalf("after a failed unmount: %v", got)
	}
	db.Close()
	tb, db = open(t, path, b)
	defer db.Close()
	if err := tb.Unmount(ctx, "v", "a"); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(t, tb, b); !got.equal(kstate{map[string]int{}, false}) {
		t.Fatalf("after the release: %v", got)
	}
}

type stuck struct{ *bindMounter }

func (stuck) Unmount(context.Context, string) error { return syscall.EBUSY }

// A mount whose reference cannot be recorded is undone: the daemon is told
// it failed, so nothing may stay mounted.
func TestUnrecordedMountIsUndone(t *testing.T) {
	b, path := setup(t)
	_, db := open(t, path, b)
	db.Close()
	ro, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	tb := &Table{db: ro, m: b, log: slog.New(slog.DiscardHandler)}
	if _, err := tb.Mount(context.Background(), "v", "a"); err == nil {
		t.Fatal("mount answered although its reference could not be recorded")
	}
	if got := stateOf(t, tb, b); !got.equal(kstate{map[string]int{}, false}) {
		t.Fatalf("after an unrecorded mount: %v", got)
	}
}

func TestParseFault(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "",
		FaultUnmountAfterRecord + ":pause": FaultUnmountAfterRecord,
		FaultUnmountAfterRecord + ":kill":  "", // the only action is pause
		FaultUnmountAfterRecord:            "",
		"volume.mount.after:pause":         "", // not a point
	} {
		if got := parseFault(in); got != want {
			t.Errorf("parseFault(%q) = %q, want %q", in, got, want)
		}
	}
}
