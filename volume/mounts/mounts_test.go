package mounts

import (
	"context"
	"os"
	"path/filepath"
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
	// A reference whose mount vanished (e.g. a reboot, or a crash after the
	// reference was recorded but before the mount).
	tb.Mount(ctx, "held", "id1")
	syscall.Unmount(b.Mountpoint("held"), 0)
	// A mount the driver made with no reference (a crash after the mount
	// but before Unmount recorded the release... or a manual mount).
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
		"37 35 98:0 / /plain rw - ext4 /dev/x rw\nshort line\n"
	m, err := parseMountInfo(strings.NewReader(in))
	if err != nil || !m["/mnt/with space"] || !m["/plain"] || len(m) != 2 {
		t.Fatalf("%v %v", m, err)
	}
}
