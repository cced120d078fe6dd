// Package mounts is the mount bookkeeping every dockplug volume driver
// shares: a durable reference count per (volume, mount ID), and
// reconciliation with the kernel's mount table at start.
//
// The daemon sends one Mount per container start and one more per docker cp
// or archive access, all with the same ID, and one Unmount per successful
// Mount (G1). So references are counted per ID, not collected in a set, and
// the real unmount happens exactly when the last reference goes.
//
// # Crashes
//
// The daemon never repeats a call whose answer it did not get (its retry
// after a dropped connection carries an empty body, which fails), so:
//
//   - a Mount the plugin died in is failed to the daemon, which will never
//     send its Unmount;
//   - an Unmount the plugin died in is not sent again either: the daemon
//     logs the error and forgets the mount.
//
// Mount therefore mounts first, then records the reference (fsync'd), then
// answers; Unmount records the release first (fsync'd), then unmounts, and
// puts the reference back if the unmount fails. At start, Reconcile
// unmounts every mount under Root that no reference holds, and mounts again
// every volume that has references but no mount (after a reboot). Where
// kill -9 lands decides what is left:
//
//	Mount, before it mounted          nothing changed
//	Mount, mounted but not recorded   a stray mount: Reconcile unmounts it
//	Mount, recorded, not answered     a reference the daemon will never release (*)
//	Unmount, before it recorded       the reference stays, as if the plugin had been down (*)
//	Unmount, recorded, not unmounted  a stray mount if it was the last: Reconcile unmounts it
//	Unmount, unmounted, not answered  done
//
// (*) is the known limit: the volume stays mounted and its Remove refuses
// until the reference is released by hand (dockplug volume release). No
// order of steps avoids it, as recording and answering cannot be one step.
// Every other window ends in the state the daemon believes.
package mounts

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	bbolt "go.etcd.io/bbolt"
)

// Bucket is the bbolt bucket the table keeps its references in.
const Bucket = "mounts"

// Mounter does the real work for one driver.
type Mounter interface {
	// Mountpoint is where volume name is mounted: a path under Root, the
	// same on every call.
	Mountpoint(name string) string
	// Root is the directory all of this driver's mount points live in.
	Root() string
	// Mount makes volume name available at Mountpoint(name).
	Mount(ctx context.Context, name string) error
	// Unmount undoes Mount. It is called only when Mountpoint is mounted.
	Unmount(ctx context.Context, name string) error
}

// Table is the reference table. It is safe for concurrent use.
type Table struct {
	db  *bbolt.DB
	m   Mounter
	log *slog.Logger
	mu  sync.Mutex // one volume's refs change with its mount state, atomically
}

// refs is one volume's references: mount ID -> count.
type refs map[string]int

func (r refs) total() int {
	n := 0
	for _, c := range r {
		n += c
	}
	return n
}

// New returns a table over db, creating Bucket if needed. The Mounter's
// Root must be absolute with symlinks resolved, as mountinfo lists it.
func New(db *bbolt.DB, m Mounter, log *slog.Logger) (*Table, error) {
	if root := m.Root(); !filepath.IsAbs(root) {
		return nil, fmt.Errorf("mounts: root %q is not absolute", root)
	} else if real, err := filepath.EvalSymlinks(root); err == nil && real != filepath.Clean(root) {
		return nil, fmt.Errorf("mounts: root %q goes through a symlink (to %s): mountinfo would never match it", root, real)
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte(Bucket))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Table{db: db, m: m, log: log}, nil
}

func (t *Table) load(name string) (refs, error) {
	r := refs{}
	err := t.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket([]byte(Bucket)).Get([]byte(name))
		if v == nil {
			return nil
		}
		return json.Unmarshal(v, &r)
	})
	if err != nil {
		return nil, fmt.Errorf("load mounts of %s: %w", name, err)
	}
	return r, nil
}

func (t *Table) store(name string, r refs) error {
	err := t.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(Bucket))
		if len(r) == 0 {
			return b.Delete([]byte(name))
		}
		v, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), v)
	})
	if err != nil {
		return fmt.Errorf("record mounts of %s: %w", name, err)
	}
	return nil
}

// Mount adds a reference for (name, id), mounting the volume if it is not
// mounted, and returns its mount point. The reference is durable before
// Mount returns; a Mount that fails leaves neither a reference nor a mount
// of its own.
func (t *Table) Mount(ctx context.Context, name, id string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fault(FaultMountBegin)
	r, err := t.load(name)
	if err != nil {
		return "", err
	}
	mp := t.m.Mountpoint(name)
	mounted, err := isMounted(mp)
	if err != nil {
		return "", err
	}
	// Mount before recording: a crash in between leaves a mount without a
	// reference, which Reconcile removes. The other order would leave a
	// reference the daemon never releases, for a Mount it saw fail.
	if !mounted {
		if err := t.m.Mount(ctx, name); err != nil {
			return "", fmt.Errorf("mount volume %s: %w", name, err)
		}
	}
	fault(FaultMountAfterMount)
	r[id]++
	if err := t.store(name, r); err != nil {
		if !mounted {
			if uerr := t.m.Unmount(ctx, name); uerr != nil {
				t.log.Error("could not undo the mount of a volume whose reference was not recorded", "volume", name, "id", id, "err", uerr)
			}
		}
		return "", err
	}
	fault(FaultMountAfterRecord)
	return mp, nil
}

// Unmount drops one reference for (name, id); the last one unmounts the
// volume. A reference the table does not hold is ignored (logged): it
// cannot be ours, and failing would only stop the daemon cleaning up.
//
// The release is durable before the real unmount: the daemon never sends
// an Unmount twice, so once recorded it is done, and a crash before the
// unmount leaves a stray mount that Reconcile removes. If the unmount
// fails, the reference is put back and the error returned.
func (t *Table) Unmount(ctx context.Context, name, id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	fault(FaultUnmountBegin)
	r, err := t.load(name)
	if err != nil {
		return err
	}
	if r[id] == 0 {
		t.log.Warn("unmount of a reference not held", "volume", name, "id", id)
		return nil
	}
	mp := t.m.Mountpoint(name)
	mounted, err := isMounted(mp)
	if err != nil {
		return err
	}
	r[id]--
	if r[id] == 0 {
		delete(r, id)
	}
	if err := t.store(name, r); err != nil {
		return err
	}
	fault(FaultUnmountAfterRecord)
	if r.total() == 0 && mounted {
		if err := t.m.Unmount(ctx, name); err != nil {
			// Put the reference back, so that the mount stays accounted
			// for: the daemon keeps its own mount active after a failed
			// Unmount, and a release by hand can try again.
			r[id]++
			if serr := t.store(name, r); serr != nil {
				t.log.Error("could not restore the reference of a failed unmount; the next start unmounts the volume", "volume", name, "id", id, "err", serr)
			}
			return fmt.Errorf("unmount volume %s: %w", name, err)
		}
	}
	fault(FaultUnmountAfterUnmount)
	return nil
}

// Count is the number of references held on name.
func (t *Table) Count(name string) (int, error) {
	r, err := t.load(name)
	if err != nil {
		return 0, err
	}
	return r.total(), nil
}

// Refs returns a copy of name's references (mount ID -> count).
func (t *Table) Refs(name string) (map[string]int, error) {
	return t.load(name)
}

// Reconcile brings the kernel in line with the table: volumes with
// references but no mount are mounted again; mounts under Root with no
// reference are unmounted. It returns what it repaired.
func (t *Table) Reconcile(ctx context.Context) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	live, err := MountPoints()
	if err != nil {
		return nil, err
	}
	held := map[string]bool{}
	err = t.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(Bucket)).ForEach(func(k, v []byte) error {
			var r refs
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("mounts of %s: %w", k, err)
			}
			if r.total() > 0 {
				held[string(k)] = true
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	var repaired []string
	var errs []string
	names := make([]string, 0, len(held))
	for n := range held {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if live[t.m.Mountpoint(name)] {
			continue
		}
		if err := t.m.Mount(ctx, name); err != nil {
			errs = append(errs, fmt.Sprintf("remount %s: %v", name, err))
			continue
		}
		t.log.Warn("remounted a volume that has references but was not mounted", "volume", name)
		repaired = append(repaired, "mounted "+name)
	}
	root := filepath.Clean(t.m.Root()) + string(filepath.Separator)
	var stray []string
	for mp := range live {
		if strings.HasPrefix(mp, root) {
			stray = append(stray, mp)
		}
	}
	sort.Strings(stray)
	for _, mp := range stray {
		name := strings.TrimPrefix(mp, root)
		if strings.Contains(name, string(filepath.Separator)) || t.m.Mountpoint(name) != mp || held[name] {
			continue
		}
		if err := t.m.Unmount(ctx, name); err != nil {
			errs = append(errs, fmt.Sprintf("unmount stray %s: %v", name, err))
			continue
		}
		t.log.Warn("unmounted a volume mount that no reference holds", "volume", name)
		repaired = append(repaired, "unmounted "+name)
	}
	if len(errs) > 0 {
		return repaired, fmt.Errorf("reconcile: %s", strings.Join(errs, "; "))
	}
	return repaired, nil
}

func isMounted(path string) (bool, error) {
	live, err := MountPoints()
	if err != nil {
		return false, err
	}
	return live[path], nil
}
