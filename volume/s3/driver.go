// Package s3 is dockplug-s3, the S3 volume driver: a volume is a prefix of
// a bucket, mounted through FUSE by its own process (package s3fs served by
// the `dockplug s3-mount` subcommand), so that the plugin can restart or be
// killed without touching the I/O of running containers.
//
// Configuration (endpoints, credentials, the allow-list of buckets) is
// plugin-level, in a file that must be mode 0600 (LoadConfig); volume
// options never carry credentials. Volumes have scope global: their
// metadata is an object in the bucket itself (Meta), created with a
// conditional write, so every host that uses the bucket sees them.
package s3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	bbolt "go.etcd.io/bbolt"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store/bolt"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/mounts"
)

// cacheBucket is the local copy of the metadata of volumes this host saw.
const cacheBucket = "volumes"

// s3Timeout bounds each control-plane call to S3: well under the daemon's
// 1-minute limits (G4).
const s3Timeout = 20 * time.Second

// DriverConfig configures the driver.
type DriverConfig struct {
	Config   *Config
	StateDir string
	// MountCommand is the argv that serves one mount, to which
	// "--spec FILE" is appended. Default: this executable, "s3-mount".
	MountCommand []string
	Logger       *slog.Logger
}

// Driver implements volume.Driver.
type Driver struct {
	cfg    DriverConfig
	db     *bbolt.DB
	mounts *mounts.Table
	procs  *procs
	log    *slog.Logger
	host   string

	mu      sync.Mutex // Create/Remove against Mount
	clients sync.Map   // profile name -> *minio.Client

	closeOnce sync.Once
}

var _ volume.Driver = (*Driver)(nil)

// New opens the driver's state, re-adopts running mount processes and
// reconciles mounts with the kernel.
func New(ctx context.Context, cfg DriverConfig) (*Driver, error) {
	if cfg.Config == nil || cfg.StateDir == "" {
		return nil, errors.New("s3 volumes: no config or state dir")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.MountCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("s3 volumes: %w", err)
		}
		cfg.MountCommand = []string{exe, "s3-mount"}
	}
	for _, dir := range []string{"mounts", "procs", "cache"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, dir), 0o700); err != nil {
			return nil, fmt.Errorf("s3 volumes: %w", err)
		}
	}
	// mounts are matched against /proc/self/mountinfo: absolute, no symlinks.
	abs, err := filepath.Abs(cfg.StateDir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("s3 volumes: state dir: %w", err)
	}
	cfg.StateDir = abs
	// The mount points must be reachable by containers' users.
	if err := os.Chmod(filepath.Join(abs, "mounts"), 0o711); err != nil {
		return nil, fmt.Errorf("s3 volumes: %w", err)
	}
	db, err := bolt.Open(filepath.Join(abs, "state.db"), cacheBucket, mounts.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3 volumes: %w", err)
	}
	host, _ := os.Hostname()
	d := &Driver{cfg: cfg, db: db, log: cfg.Logger, host: host}
	d.procs = newProcs(d)
	if d.mounts, err = mounts.New(db, d.procs, cfg.Logger); err != nil {
		db.Close()
		return nil, err
	}
	if err := d.procs.adopt(ctx); err != nil {
		d.log.Error("re-adopting mount processes", "err", err)
	}
	repaired, err := d.mounts.Reconcile(ctx)
	if len(repaired) > 0 {
		d.log.Warn("reconciled mounts at start", "repaired", repaired)
	}
	if err != nil {
		d.log.Error("some mounts could not be reconciled", "err", err)
	}
	return d, nil
}

// Close stops watching mount processes and releases the state file. Mounts
// and their processes stay: containers are using them.
func (d *Driver) Close() error {
	d.procs.close()
	var err error
	d.closeOnce.Do(func() { err = d.db.Close() })
	return err
}

func (d *Driver) mountpoint(name string) string { return filepath.Join(d.cfg.StateDir, "mounts", name) }

func (d *Driver) client(p *Profile) (*minio.Client, error) {
	if c, ok := d.clients.Load(p.name); ok {
		return c.(*minio.Client), nil
	}
	c, err := p.Client()
	if err != nil {
		return nil, err
	}
	d.clients.Store(p.name, c)
	return c, nil
}

// Create makes the volume: options, allow-list, endpoint, credentials and
// bucket are checked first, and nothing is recorded unless all are right.
// The metadata object is created with If-None-Match: *, so two hosts
// creating one name at once cannot both win; the same name with the same
// options is not an error (the daemon retries).
func (d *Driver) Create(ctx context.Context, req *volume.CreateRequest) error {
	if err := checkName(req.Name); err != nil {
		return plugin.BadRequest("%v", err)
	}
	o, err := parseOpts(req.Name, req.Opts)
	if err != nil {
		return err
	}
	if !d.cfg.Config.Allowed(o.Bucket, o.Prefix) {
		return plugin.Errorf(http.StatusForbidden, "bucket %s prefix %s is not in the plugin's allow-buckets (%v)", o.Bucket, o.Prefix, d.cfg.Config.AllowBuckets)
	}
	prof, err := d.cfg.Config.Profile(o.Profile)
	if err != nil {
		return plugin.BadRequest("%v", err)
	}
	cli, err := d.client(prof)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s3Timeout)
	defer cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, err := d.cached(req.Name); err != nil {
		return err
	} else if c != nil && (c.Bucket != o.Bucket || c.Profile != prof.name) {
		return plugin.Conflict("volume %s already exists in bucket %s (profile %s)", req.Name, c.Bucket, c.Profile)
	}
	if err := pingBucket(ctx, cli, prof, o.Bucket); err != nil {
		return plugin.BadRequest("create volume %s: %v", req.Name, err)
	}
	if old, err := readMeta(ctx, cli, o.Bucket, req.Name); err != nil {
		return fmt.Errorf("create volume %s: %w", req.Name, describe(err, prof, o.Bucket))
	} else if old != nil {
		return d.sameVolume(old, prof, o, req)
	}
	owned, err := prefixEmpty(ctx, cli, o.Bucket, o.Prefix)
	if err != nil {
		return fmt.Errorf("create volume %s: %w", req.Name, describe(err, prof, o.Bucket))
	}
	m := &Meta{Version: metaVersion, Name: req.Name, Profile: prof.name, Bucket: o.Bucket, Prefix: o.Prefix,
		Opts: req.Opts, CreatedAt: time.Now().UTC().Truncate(time.Second), Owned: owned, Host: d.host}
	if err := writeMetaOnce(ctx, cli, m); errors.Is(err, errExists) {
		old, rerr := readMeta(ctx, cli, o.Bucket, req.Name)
		if rerr != nil || old == nil {
			return fmt.Errorf("create volume %s: created concurrently elsewhere, and unreadable: %v", req.Name, rerr)
		}
		return d.sameVolume(old, prof, o, req)
	} else if err != nil {
		return fmt.Errorf("create volume %s: %w", req.Name, describe(err, prof, o.Bucket))
	}
	if err := d.cache(m); err != nil {
		return err
	}
	d.log.Debug("created volume", "volume", req.Name, "at", o.String(), "owned", owned)
	return nil
}

// sameVolume accepts an existing volume of the same name when its options
// are the ones asked for.
func (d *Driver) sameVolume(old *Meta, prof *Profile, o *volOpts, req *volume.CreateRequest) error {
	if old.Profile != prof.name || old.Prefix != o.Prefix || !maps.Equal(old.Opts, req.Opts) {
		return plugin.Conflict("volume %s already exists in bucket %s with other options (%v, profile %s)", req.Name, old.Bucket, old.Opts, old.Profile)
	}
	return d.cache(old)
}

// Remove deletes the volume, refusing while it is mounted on this host.
// Data is deleted only for prefixes the plugin created, or with
// -o delete-data=true. Data goes first: a crash leaves metadata whose
// Remove can be retried, never data nobody knows of.
func (d *Driver) Remove(ctx context.Context, req *volume.RemoveRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, cli, err := d.find(ctx, req.Name)
	if err != nil {
		return err
	}
	if n, err := d.mounts.Count(req.Name); err != nil {
		return err
	} else if n > 0 {
		return plugin.Conflict("volume %s is in use on this host (%d mount(s))", req.Name, n)
	}
	ctx, cancel := context.WithTimeout(ctx, 50*time.Second)
	defer cancel()
	if m.Owned || m.Opts["delete-data"] == "true" {
		if err := deletePrefix(ctx, cli, m.Bucket, m.Prefix); err != nil {
			return fmt.Errorf("remove volume %s: delete data: %w", req.Name, err)
		}
	}
	if err := cli.RemoveObject(ctx, m.Bucket, metaKey(m.Name), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("remove volume %s: metadata: %w", req.Name, err)
	}
	if err := d.uncache(req.Name); err != nil {
		return err
	}
	os.Remove(d.mountpoint(req.Name))
	d.procs.forget(req.Name)
	return nil
}

// Mount starts the volume's mount process (once, whatever the number of
// references). A mount whose process died is repaired first.
func (d *Driver) Mount(ctx context.Context, req *volume.MountRequest) (*volume.MountResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, _, err := d.find(ctx, req.Name); err != nil {
		return nil, err
	}
	d.procs.repairDead(ctx, req.Name)
	mp, err := d.mounts.Mount(ctx, req.Name, req.ID)
	if err != nil {
		return nil, err
	}
	return &volume.MountResponse{Mountpoint: mp}, nil
}

// Unmount releases one reference; the last one unmounts, which waits for
// every upload of the volume.
func (d *Driver) Unmount(ctx context.Context, req *volume.UnmountRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mounts.Unmount(ctx, req.Name, req.ID)
}

// Path answers the mount point while mounted here, "" otherwise.
func (d *Driver) Path(ctx context.Context, req *volume.PathRequest) (*volume.PathResponse, error) {
	if _, _, err := d.find(ctx, req.Name); err != nil {
		return nil, err
	}
	n, err := d.mounts.Count(req.Name)
	if err != nil || n == 0 {
		return &volume.PathResponse{}, err
	}
	return &volume.PathResponse{Mountpoint: d.mountpoint(req.Name)}, nil
}

// Get finds the volume in the bucket. "Not found" only when S3 says so: if
// S3 cannot be reached, the last known metadata answers (G2).
func (d *Driver) Get(ctx context.Context, req *volume.GetRequest) (*volume.GetResponse, error) {
	m, _, err := d.find(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	v, err := d.view(m)
	if err != nil {
		return nil, err
	}
	return &volume.GetResponse{Volume: v}, nil
}

// List answers the volumes of every allowed bucket of every profile.
func (d *Driver) List(ctx context.Context) (*volume.ListResponse, error) {
	ms, err := d.listAll(ctx)
	if err != nil {
		return nil, err
	}
	out := &volume.ListResponse{Volumes: make([]*volume.Volume, 0, len(ms))}
	for _, m := range ms {
		v, err := d.view(m)
		if err != nil {
			return nil, err
		}
		out.Volumes = append(out.Volumes, v)
	}
	return out, nil
}

func (d *Driver) view(m *Meta) (*volume.Volume, error) {
	n, err := d.mounts.Count(m.Name)
	if err != nil {
		return nil, err
	}
	opts := map[string]any{}
	for k, v := range m.Opts {
		opts[k] = v
	}
	st := map[string]any{
		"options": opts, "mounts": n, "bucket": m.Bucket, "prefix": m.Prefix,
		"profile": m.Profile, "ownsData": m.Owned, "createdBy": m.Host,
	}
	for k, v := range d.procs.status(m.Name) {
		st[k] = v
	}
	return &volume.Volume{Name: m.Name, Mountpoint: d.mountpoint(m.Name), CreatedAt: m.CreatedAt, Status: st}, nil
}

// Capabilities: the same volume is visible from every host using the bucket.
func (d *Driver) Capabilities(ctx context.Context) (*volume.CapabilitiesResponse, error) {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: volume.ScopeGlobal}}, nil
}
