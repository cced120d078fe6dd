// Package mounts is the mount bookkeeping every dockplug volume driver
// shares: a durable reference count per (volume, mount ID), and
// reconciliation with the kernel's mount table at start.
//
// The daemon sends one Mount per container start and one more per docker cp
// or archive access, all with the same ID, and one Unmount per successful
// Mount (G1). So references are counted per ID, not collected in a set, and
// the real unmount happens exactly when the last reference goes.
//
// Each reference is written to bbolt (fsync'd) before Mount answers and
// removed only after the real unmount succeeded, so kill -9 at any point
// loses nothing: at start, Reconcile mounts again every volume that has
// references but no mount, and unmounts every mount the driver made that
// has no reference.
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
// Mount returns.
func (t *Table) Mount(ctx context.Context, name, id string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, err := t.load(name)
	if err != nil {
		return "", err
	}
	mp := t.m.Mountpoint(name)
	mounted, err := isMounted(mp)
	if err != nil {
		return "", err
	}
	// Record first: a crash between here and the mount leaves a reference
	// without a mount, which Reconcile repairs by mounting.
	r[id]++
	if err := t.store(name, r); err != nil {
		return "", err
	}
	if !mounted {
		if err := t.m.Mount(ctx, name); err != nil {
			r[id]--
			if r[id] == 0 {
				delete(r, id)
			}
			if serr := t.store(name, r); serr != nil {
				t.log.Error("could not drop the reference of a failed mount", "volume", name, "id", id, "err", serr)
			}
			return "", fmt.Errorf("mount volume %s: %w", name, err)
		}
	}
	return mp, nil
}

// Unmount drops one reference for (name, id); the last one unmounts the
// volume. A reference the table does not hold is ignored (logged): it
// cannot be ours, and failing would only stop the daemon cleaning up.
func (t *Table) Unmount(ctx context.Context, name, id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, err := t.load(name)
	if err != nil {
		return err
	}
	if r[id] == 0 {
		t.log.Warn("unmount of a reference not held", "volume", name, "id", id)
		return nil
	}
	r[id]--
	if r[id] == 0 {
		delete(r, id)
	}
	if r.total() == 0 {
		mp := t.m.Mountpoint(name)
		mounted, err := isMounted(mp)
		if err != nil {
			return err
		}
		if mounted {
			// Keep the reference until the unmount succeeded: otherwise a
			// failure would leave a mount nobody accounts for.
			if err := t.m.Unmount(ctx, name); err != nil {
				return fmt.Errorf("unmount volume %s: %w", name, err)
			}
		}
	}
	return t.store(name, r)
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
