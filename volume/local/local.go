// Package local is dockplug's directory volume driver: each volume is a
// directory, <state>/volumes/NAME/_data, or an existing host directory under
// a prefix the operator allowed. Mount bind-mounts it on
// <state>/mounts/NAME, so the crash-safe bookkeeping of package mounts
// is exercised for real.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store/bolt"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/mounts"
)

const volumesBucket = "volumes"

// Options the driver accepts with docker volume create -o.
var knownOptions = []string{"gid", "mode", "path", "uid"}

// validName is docker's own volume-name rule, which excludes "/" and "..".
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// Config configures the driver.
type Config struct {
	// StateDir holds state.db, volumes/ and mounts/.
	StateDir string
	// AllowedPaths are the host directories under which -o path=... may
	// point. Empty: the path option is refused.
	AllowedPaths []string
	Logger       *slog.Logger
}

// Driver implements volume.Driver.
type Driver struct {
	cfg    Config
	db     *bbolt.DB
	mounts *mounts.Table
	log    *slog.Logger
	mu     sync.Mutex // Create/Remove against Mount: a volume can't vanish while being mounted
}

var _ volume.Driver = (*Driver)(nil)

// record is what the driver keeps per volume.
type record struct {
	Name      string            `json:"name"`
	Opts      map[string]string `json:"opts,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
	DataPath  string            `json:"dataPath"`
	Owned     bool              `json:"owned"` // the driver made DataPath, so Remove deletes it
}

// New opens the driver's state and reconciles mounts with the kernel.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("local volumes: no state dir")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for i, p := range cfg.AllowedPaths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("local volumes: allowed path %q is not absolute", p)
		}
		cfg.AllowedPaths[i] = filepath.Clean(p)
	}
	for _, d := range []string{"volumes", "mounts"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o711); err != nil {
			return nil, fmt.Errorf("local volumes: %w", err)
		}
	}
	// Mount points are compared with /proc/self/mountinfo, which lists
	// absolute paths with symlinks resolved: so must ours be.
	abs, err := filepath.Abs(cfg.StateDir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("local volumes: state dir: %w", err)
	}
	cfg.StateDir = abs
	db, err := bolt.Open(filepath.Join(cfg.StateDir, "state.db"), volumesBucket, mounts.Bucket)
	if err != nil {
		return nil, fmt.Errorf("local volumes: %w", err)
	}
	d := &Driver{cfg: cfg, db: db, log: cfg.Logger}
	if d.mounts, err = mounts.New(db, (*binder)(d), cfg.Logger); err != nil {
		db.Close()
		return nil, err
	}
	repaired, err := d.mounts.Reconcile(ctx)
	if len(repaired) > 0 {
		d.log.Warn("reconciled mounts at start", "repaired", repaired)
	}
	if err != nil {
		// One volume that cannot be remounted (say, a path= directory
		// that is gone) must not take every other volume down with it:
		// its own Mount calls will fail with the reason.
		d.log.Error("some mounts could not be reconciled", "err", err)
	}
	return d, nil
}

// Close releases the state file. Mounts stay: containers may be using them.
func (d *Driver) Close() error { return d.db.Close() }

func (d *Driver) mountpoint(name string) string { return filepath.Join(d.cfg.StateDir, "mounts", name) }

func (d *Driver) load(name string) (*record, error) {
	var r *record
	err := d.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket([]byte(volumesBucket)).Get([]byte(name))
		if v == nil {
			return nil
		}
		r = new(record)
		return json.Unmarshal(v, r)
	})
	if err != nil {
		return nil, fmt.Errorf("read volume %s: %w", name, err)
	}
	return r, nil
}

func checkName(name string) error {
	if !validName.MatchString(name) || strings.Contains(name, "..") {
		return plugin.BadRequest("invalid volume name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit, no '..'", name)
	}
	return nil
}

type parsedOpts struct {
	uid, gid int
	mode     fs.FileMode
	path     string
}

func (d *Driver) parseOpts(opts map[string]string) (*parsedOpts, error) {
	p := &parsedOpts{uid: -1, gid: -1, mode: 0o755}
	var unknown []string
	for k, v := range opts {
		var err error
		switch k {
		case "uid", "gid":
			var n int
			n, err = strconv.Atoi(v)
			if err == nil && (n < 0 || n > 1<<31-2) {
				err = errors.New("out of range")
			}
			if k == "uid" {
				p.uid = n
			} else {
				p.gid = n
			}
		case "mode":
			var n uint64
			n, err = strconv.ParseUint(v, 8, 32)
			if err == nil && n > 0o7777 {
				err = errors.New("more than 4 octal digits")
			}
			p.mode = fileMode(uint32(n))
		case "path":
			p.path, err = d.allowedPath(v)
		default:
			unknown = append(unknown, k)
			continue
		}
		if err != nil {
			return nil, plugin.BadRequest("option %s=%q: %v", k, v, err)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, plugin.BadRequest("unknown option(s) %s; known options: %s", strings.Join(unknown, ", "), strings.Join(knownOptions, ", "))
	}
	return p, nil
}

// fileMode turns a chmod(1) number into an fs.FileMode. FileMode keeps the
// setuid, setgid and sticky bits elsewhere than 07000, and os.Chmod reads
// them only there: fs.FileMode(01777) is plain 0777.
func fileMode(n uint32) fs.FileMode {
	m := fs.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// allowedPath resolves symlinks before checking the prefix, so a link under
// an allowed directory cannot point the volume at /etc.
func (d *Driver) allowedPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", errors.New("must be an absolute path")
	}
	if len(d.cfg.AllowedPaths) == 0 {
		return "", errors.New("host paths are disabled (the operator allows them with --volume-allowed-path)")
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", errors.New("not a directory")
	}
	if d.allowedBase(real) == "" {
		return "", fmt.Errorf("not under an allowed path (%s)", strings.Join(d.cfg.AllowedPaths, ", "))
	}
	return real, nil
}

// allowedBase is the outermost allowed prefix, with symlinks resolved,
// that holds the resolved path real; "" if none does.
func (d *Driver) allowedBase(real string) string {
	base := ""
	for _, a := range d.cfg.AllowedPaths {
		ra, err := filepath.EvalSymlinks(a)
		if err != nil {
			continue
		}
		if within(ra, real) && (base == "" || len(ra) < len(base)) {
			base = ra
		}
	}
	return base
}

// within reports whether p is dir or below it (both clean and absolute).
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Create makes the volume. It is idempotent for the same options; the same
// name with other options is a conflict.
func (d *Driver) Create(ctx context.Context, req *volume.CreateRequest) error {
	if err := checkName(req.Name); err != nil {
		return err
	}
	p, err := d.parseOpts(req.Opts)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, err := d.load(req.Name); err != nil {
		return err
	} else if old != nil {
		if maps.Equal(old.Opts, req.Opts) {
			return nil
		}
		return plugin.Conflict("volume %s already exists with other options (%v)", req.Name, old.Opts)
	}
	r := &record{Name: req.Name, Opts: req.Opts, CreatedAt: time.Now().UTC().Truncate(time.Second), DataPath: p.path}
	if r.DataPath == "" {
		r.Owned = true
		r.DataPath = filepath.Join(d.cfg.StateDir, "volumes", req.Name, "_data")
		// A crash after this and before the record leaves a directory a
		// retried Create reuses.
		if err := os.MkdirAll(r.DataPath, 0o755); err != nil {
			return fmt.Errorf("create volume %s: %w", req.Name, err)
		}
		// Owner before mode: chown(2) may clear the setuid and setgid bits
		// (Linux does on files, not on directories; POSIX leaves it open).
		if p.uid >= 0 || p.gid >= 0 {
			if err := os.Chown(r.DataPath, p.uid, p.gid); err != nil {
				return fmt.Errorf("create volume %s: %w", req.Name, err)
			}
		}
		if err := os.Chmod(r.DataPath, p.mode); err != nil {
			return fmt.Errorf("create volume %s: %w", req.Name, err)
		}
	} else if p.uid >= 0 || p.gid >= 0 || req.Opts["mode"] != "" {
		return plugin.BadRequest("options uid, gid and mode apply to new directories, not to path=%s", p.path)
	}
	v, _ := json.Marshal(r)
	err = d.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte(volumesBucket)).Put([]byte(r.Name), v) })
	if err != nil {
		return fmt.Errorf("create volume %s: %w", req.Name, err)
	}
	d.log.Debug("created volume", "volume", req.Name, "path", r.DataPath)
	return nil
}

// Remove deletes the volume, refusing while it is mounted. Data is deleted
// only for directories the driver created.
func (d *Driver) Remove(ctx context.Context, req *volume.RemoveRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, err := d.load(req.Name)
	if err != nil {
		return err
	}
	if r == nil {
		return plugin.NotFound("no such volume: %s", req.Name)
	}
	if n, err := d.mounts.Count(req.Name); err != nil {
		return err
	} else if n > 0 {
		return plugin.Conflict("volume %s is in use (%d mount(s))", req.Name, n)
	}
	if r.Owned {
		// Data first: a crash after it leaves a record whose Remove is
		// retried; the other order would leak the data forever.
		if err := os.RemoveAll(filepath.Dir(r.DataPath)); err != nil {
			return fmt.Errorf("remove volume %s: %w", req.Name, err)
		}
	}
	os.Remove(d.mountpoint(req.Name))
	err = d.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte(volumesBucket)).Delete([]byte(req.Name)) })
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", req.Name, err)
	}
	return nil
}

// Mount bind-mounts the volume (once, whatever the number of references).
func (d *Driver) Mount(ctx context.Context, req *volume.MountRequest) (*volume.MountResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, err := d.load(req.Name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, plugin.NotFound("no such volume: %s", req.Name)
	}
	mp, err := d.mounts.Mount(ctx, req.Name, req.ID)
	if err != nil {
		return nil, err
	}
	return &volume.MountResponse{Mountpoint: mp}, nil
}

// Unmount releases one reference.
func (d *Driver) Unmount(ctx context.Context, req *volume.UnmountRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mounts.Unmount(ctx, req.Name, req.ID)
}

// Path answers the mount point while mounted, "" otherwise.
func (d *Driver) Path(ctx context.Context, req *volume.PathRequest) (*volume.PathResponse, error) {
	r, err := d.load(req.Name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, plugin.NotFound("no such volume: %s", req.Name)
	}
	n, err := d.mounts.Count(req.Name)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return &volume.PathResponse{}, nil
	}
	return &volume.PathResponse{Mountpoint: d.mountpoint(req.Name)}, nil
}

// Get answers not-found only when the volume really does not exist: any
// other failure is an internal error, which the daemon also reads as
// "gone", but a failed read must not be confused with absence (G2).
func (d *Driver) Get(ctx context.Context, req *volume.GetRequest) (*volume.GetResponse, error) {
	r, err := d.load(req.Name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, plugin.NotFound("no such volume: %s", req.Name)
	}
	v, err := d.view(r)
	if err != nil {
		return nil, err
	}
	return &volume.GetResponse{Volume: v}, nil
}

// List answers every volume.
func (d *Driver) List(ctx context.Context) (*volume.ListResponse, error) {
	var recs []*record
	err := d.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(volumesBucket)).ForEach(func(k, v []byte) error {
			r := new(record)
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("volume %s: %w", k, err)
			}
			recs = append(recs, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	out := &volume.ListResponse{Volumes: make([]*volume.Volume, 0, len(recs))}
	for _, r := range recs {
		v, err := d.view(r)
		if err != nil {
			return nil, err
		}
		out.Volumes = append(out.Volumes, v)
	}
	return out, nil
}

func (d *Driver) view(r *record) (*volume.Volume, error) {
	n, err := d.mounts.Count(r.Name)
	if err != nil {
		return nil, err
	}
	opts := map[string]any{}
	for k, v := range r.Opts {
		opts[k] = v
	}
	return &volume.Volume{
		Name:       r.Name,
		Mountpoint: d.mountpoint(r.Name),
		CreatedAt:  r.CreatedAt,
		Status:     map[string]any{"options": opts, "mounts": n, "dataPath": r.DataPath},
	}, nil
}

// Capabilities: volumes live on this host.
func (d *Driver) Capabilities(ctx context.Context) (*volume.CapabilitiesResponse, error) {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: volume.ScopeLocal}}, nil
}

// binder is the mounts.Mounter of the driver: a bind mount of the data dir.
type binder Driver

func (b *binder) Root() string               { return filepath.Join(b.cfg.StateDir, "mounts") }
func (b *binder) Mountpoint(n string) string { return (*Driver)(b).mountpoint(n) }

func (b *binder) Mount(ctx context.Context, name string) error {
	d := (*Driver)(b)
	r, err := d.load(name)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("volume %s has references but no record", name)
	}
	// DataPath was resolved and checked at Create, but mount(2) follows
	// symlinks now: a container holding a volume on an allowed directory
	// can since have replaced a directory below it by a link to /etc.
	// So open it again from its base, one component at a time without
	// following any symlink, and bind the directory that descriptor holds.
	base := filepath.Join(b.cfg.StateDir, "volumes")
	if !r.Owned {
		if base = d.allowedBase(r.DataPath); base == "" {
			allowed := strings.Join(b.cfg.AllowedPaths, ", ")
			if allowed == "" {
				allowed = "none"
			}
			return fmt.Errorf("host path %s is no longer under an allowed path (allowed: %s)", r.DataPath, allowed)
		}
	}
	fd, err := openDirBeneath(base, r.DataPath)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	mp := b.Mountpoint(name)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(fmt.Sprintf("/proc/self/fd/%d", fd), mp, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", r.DataPath, mp, err)
	}
	return nil
}

// openDirBeneath opens the directory dir, at or below base, as an O_PATH
// descriptor. base is opened as it is (it is the plugin's or the
// operator's); each component after it is opened with O_NOFOLLOW from the
// previous one's descriptor, so a symlink anywhere below base is refused,
// not followed, and nothing can be swapped in between two steps.
func openDirBeneath(base, dir string) (int, error) {
	if !within(base, dir) {
		return -1, fmt.Errorf("%s is not under %s", dir, base)
	}
	fd, err := unix.Open(base, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: base, Err: err}
	}
	rel, _ := filepath.Rel(base, dir)
	if rel == "." {
		return fd, nil
	}
	cur := base
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, c)
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: cur, Err: err}
		}
		fd = next
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, &os.PathError{Op: "stat", Path: cur, Err: err}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
		case unix.S_IFLNK:
			unix.Close(fd)
			return -1, fmt.Errorf("%s is a symlink (it was a directory when the volume was created): refusing to follow it", cur)
		default:
			unix.Close(fd)
			return -1, fmt.Errorf("%s is no longer a directory", cur)
		}
	}
	return fd, nil
}

func (b *binder) Unmount(ctx context.Context, name string) error {
	mp := b.Mountpoint(name)
	err := syscall.Unmount(mp, 0)
	if errors.Is(err, syscall.EBUSY) {
		// Something on the host still has it open; detach so new users
		// can't reach it and the kernel frees it when they go.
		err = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("unmount %s: %w", mp, err)
	}
	return nil
}
