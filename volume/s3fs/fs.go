// Package s3fs is a FUSE file system over a prefix of an S3 bucket, built
// on go-fuse's fs API and minio-go. It is testable without Docker: mount
// it on any directory (Mount) and use it.
//
// Mapping: a directory is a key prefix ending in "/" (an empty directory
// is a zero-byte marker object "dir/"); a file is an object. Listings
// (ListObjectsV2 with delimiter "/", paged) are cached per directory for
// Options.CacheTTL and answer lookups and stat: no HEAD per entry.
//
// Durability contract:
//   - writes are staged in a local file (Options.CacheDir) and uploaded
//     with parallel multipart above PartSize; a file only appended to
//     since it was empty streams its full parts while written (stream);
//   - fsync returns only when the data is in S3, and reports upload
//     errors (EIO, with a log line);
//   - close waits for the upload too, unless Options.AsyncClose: then it
//     returns at once and the upload runs in the background; fsync still
//     waits, and Close (unmount) waits for every upload;
//   - a staged file with data not yet in S3 is journaled (a .key file
//     beside it): a mount process that is killed leaves it in CacheDir,
//     and the next FS over the same CacheDir uploads it (Recover).
//
// Semantics that differ from a local disk: no hard links or symlinks
// (ENOTSUP); rename is copy + delete, not atomic, and renaming a directory
// copies every object under it; chmod, chown and utimes succeed but are
// not stored (every entry shows the volume's uid, gid and mode); between
// hosts the last writer of an object wins; opening an existing file for
// writing (without O_TRUNC) first downloads it.
package s3fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/minio/minio-go/v7"
)

// Options configure a file system.
type Options struct {
	Client *minio.Client
	Bucket string
	Prefix string // "" or "a/b/"

	UID, GID uint32
	Mode     os.FileMode // of directories; files get it without the x bits

	// CacheTTL is the lifetime of cached listings and of the kernel's
	// entry and attribute caches. 0: every lookup lists.
	CacheTTL time.Duration
	// AsyncClose makes close return before the upload (fsync still waits).
	AsyncClose bool
	// CacheDir holds staged writes and their journal.
	CacheDir string
	// MaxStaged bounds the bytes of closed files waiting for a background
	// upload (AsyncClose); past it, close waits. Default 1 GiB.
	MaxStaged int64
	// PartSize and Uploads shape multipart uploads: default 8 MiB parts, 4
	// in flight per file.
	PartSize uint64
	Uploads  uint
	// ChunkSize and ReadAhead shape reads: ranged GETs of ChunkSize
	// (default 16 MiB), ReadAhead chunks ahead (default 4) when reading
	// sequentially.
	ChunkSize int64
	ReadAhead int

	Logger *slog.Logger
}

// FS is one mounted (or mountable) file system.
type FS struct {
	o   Options
	log *slog.Logger

	lmu      sync.Mutex
	listings map[string]*listing // dir key -> listing

	bg       inflight // background uploads and aborts
	bgSem    chan struct{}
	stagedMu sync.Mutex
	staged   int64 // bytes of closed files waiting for upload
	dirtyMu  sync.Mutex
	dirty    map[*node]struct{} // nodes with data not yet in S3

	root *node
}

// New checks the options and returns a file system ready to Mount.
func New(o Options) (*FS, error) {
	if o.Client == nil || o.Bucket == "" {
		return nil, errors.New("s3fs: no client or bucket")
	}
	if o.Prefix != "" && !strings.HasSuffix(o.Prefix, "/") {
		return nil, fmt.Errorf("s3fs: prefix %q must end in /", o.Prefix)
	}
	if o.CacheDir == "" {
		return nil, errors.New("s3fs: no cache dir")
	}
	if err := os.MkdirAll(o.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("s3fs: cache dir: %w", err)
	}
	if o.Mode == 0 {
		o.Mode = 0o755
	}
	if o.MaxStaged <= 0 {
		o.MaxStaged = 1 << 30
	}
	if o.PartSize == 0 {
		o.PartSize = 8 << 20
	}
	if o.Uploads == 0 {
		o.Uploads = 4
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 16 << 20
	}
	if o.ReadAhead <= 0 {
		o.ReadAhead = 4
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := &FS{o: o, log: o.Logger, listings: map[string]*listing{}, bgSem: make(chan struct{}, 32), dirty: map[*node]struct{}{}}
	f.bg.cond = sync.NewCond(&f.bg.mu)
	f.root = &node{fsys: f, dir: true}
	return f, nil
}

// Root is the root node, for fs.Mount.
func (f *FS) Root() fs.InodeEmbedder { return f.root }

// Mount mounts the file system on dir and serves it until unmounted
// (Server.Wait). fsName is what mountinfo shows as the source.
func (f *FS) Mount(dir, fsName string) (*fuse.Server, error) {
	ttl := f.o.CacheTTL
	neg := ttl
	opts := &fs.Options{
		EntryTimeout: &ttl, AttrTimeout: &ttl, NegativeTimeout: &neg,
		UID: f.o.UID, GID: f.o.GID,
		MountOptions: fuse.MountOptions{
			AllowOther:    true,
			FsName:        fsName,
			Name:          "dockplug-s3",
			MaxWrite:      1 << 20,
			MaxReadAhead:  1 << 20,
			MaxBackground: 64,
			DirectMount:   true,
			Options:       []string{"default_permissions"},
		},
		Logger: nil,
	}
	srv, err := fs.Mount(dir, f.root, opts)
	if err != nil {
		return nil, fmt.Errorf("s3fs: mount %s: %w", dir, err)
	}
	return srv, nil
}

// Close waits for every background upload and uploads what is still
// dirty. Call it after the server has stopped. Data it could not upload
// stays journaled in CacheDir for Recover.
func (f *FS) Close(ctx context.Context) error {
	f.bg.Wait()
	f.dirtyMu.Lock()
	var ns []*node
	for n := range f.dirty {
		ns = append(ns, n)
	}
	f.dirtyMu.Unlock()
	var errs []error
	for _, n := range ns {
		if err := n.upload(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// key is the object key of a path relative to the root ("" is the root).
func (f *FS) key(path string) string { return f.o.Prefix + path }

func (f *FS) dirKey(path string) string {
	if path == "" {
		return f.o.Prefix
	}
	return f.o.Prefix + path + "/"
}

func (f *FS) fileMode() uint32 { return uint32(f.o.Mode.Perm() &^ 0o111) }
func (f *FS) dirMode() uint32  { return uint32(f.o.Mode.Perm()) }

func (f *FS) fillAttr(a *fuse.Attr, dir bool, size int64, mtime time.Time) {
	if dir {
		a.Mode = syscall.S_IFDIR | f.dirMode()
		a.Nlink = 2
		a.Size = 4096
	} else {
		a.Mode = syscall.S_IFREG | f.fileMode()
		a.Nlink = 1
		a.Size = uint64(size)
		a.Blocks = (uint64(size) + 511) / 512
	}
	a.Uid, a.Gid = f.o.UID, f.o.GID
	a.Blksize = 1 << 20
	if !mtime.IsZero() {
		a.SetTimes(&mtime, &mtime, &mtime)
	}
}

// eio logs err with context and answers EIO: the caller sees a clean
// error, the operator the reason.
func (f *FS) eio(op, key string, err error) syscall.Errno {
	if errors.Is(err, context.Canceled) {
		return syscall.EINTR
	}
	f.log.Error("s3 operation failed", "op", op, "key", key, "err", err)
	return syscall.EIO
}

func (f *FS) markDirty(n *node, dirty bool) {
	f.dirtyMu.Lock()
	defer f.dirtyMu.Unlock()
	if dirty {
		f.dirty[n] = struct{}{}
	} else {
		delete(f.dirty, n)
	}
}

// waitUploads waits for every background upload (rename of a directory
// copies what is in S3, so it must all be there).
func (f *FS) waitUploads() { f.bg.Wait() }

// inflight counts background work. Unlike a sync.WaitGroup, work may be
// added while someone waits (a directory rename waits while other files
// are closed).
type inflight struct {
	mu   sync.Mutex
	cond *sync.Cond
	n    int
}

func (w *inflight) Add(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += n
	if w.n == 0 {
		w.cond.Broadcast()
	}
}

func (w *inflight) Done() { w.Add(-1) }

func (w *inflight) Wait() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.n > 0 {
		w.cond.Wait()
	}
}
