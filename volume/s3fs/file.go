package s3fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/minio/minio-go/v7"
)

// stage is a file's content staged in CacheDir: <id>.data, and, while it
// holds data not yet in S3, <id>.key naming the object (the journal).
type stage struct {
	io sync.RWMutex // writes exclude uploads and staged reads
	f  *os.File
	id string
	sz int64 // guarded by io

	// guarded by the node's mu
	dirty     bool
	gen       uint64 // bumped by every change
	opens     int    // open handles that may write
	pending   int    // background uploads queued
	key       string // the object it uploads to
	journaled bool
	// streamable: every change since the stage was empty was an append,
	// so full parts can be uploaded while the file is written.
	streamable bool
	stream     *stream
}

// s3Abort bounds the abort of a multipart upload nobody waits for.
const s3Abort = 30 * time.Second

// noStream ends streaming for st (n.mu held): its parts are dropped and
// the next upload sends the whole file.
func (st *stage) noStream() {
	st.streamable = false
	if st.stream != nil {
		st.stream.abort()
		st.stream = nil
	}
}

// appended runs after an append brought st to size (n.mu held): full
// parts go up now.
func (n *node) appended(ctx context.Context, st *stage, size int64) {
	if !st.streamable || size < int64(n.fsys.o.PartSize) {
		return
	}
	if st.stream == nil {
		s, err := n.fsys.startStream(ctx, st.f, st.key)
		if err != nil {
			n.fsys.log.Warn("streaming upload not started; close uploads the whole file", "key", st.key, "err", err)
			st.streamable = false
			return
		}
		st.stream = s
	}
	st.stream.fill(size)
}

func (s *stage) size() int64 {
	s.io.RLock()
	defer s.io.RUnlock()
	return s.sz
}

func (f *FS) stagePath(id, ext string) string { return filepath.Join(f.o.CacheDir, id+ext) }

func newID() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// ensureStage gives n a staged copy; n.mu must be held. Without empty, an
// existing object is downloaded into it first.
func (n *node) ensureStage(ctx context.Context, empty bool) (*stage, error) {
	if n.st != nil {
		return n.st, nil
	}
	id := newID()
	f, err := os.OpenFile(n.fsys.stagePath(id, ".data"), os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	st := &stage{f: f, id: id, key: n.fsys.key(n.path()), streamable: empty || n.size == 0}
	if !empty && n.size > 0 {
		o, err := n.fsys.o.Client.GetObject(ctx, n.fsys.o.Bucket, st.key, minio.GetObjectOptions{})
		if err == nil {
			st.sz, err = io.Copy(f, o)
			o.Close()
		}
		if err != nil && !isNoSuchKey(err) {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("download %s to write it: %w", st.key, err)
		}
	}
	n.st = st
	return st, nil
}

// changed marks the stage dirty and journals it; n.mu must be held.
func (n *node) changed(st *stage) {
	st.gen++
	n.mtime = time.Now()
	if !st.dirty {
		st.dirty = true
		n.fsys.markDirty(n, true)
	}
	if !st.journaled {
		if err := os.WriteFile(n.fsys.stagePath(st.id, ".key"), []byte(st.key), 0o600); err != nil {
			n.fsys.log.Error("journal a staged file", "key", st.key, "err", err)
		} else {
			st.journaled = true
		}
	}
}

// dropStage removes a stage nobody needs any more; n.mu must be held.
func (n *node) dropStage() {
	st := n.st
	if st == nil || st.dirty || st.opens > 0 || st.pending > 0 {
		return
	}
	st.f.Close()
	os.Remove(n.fsys.stagePath(st.id, ".data"))
	os.Remove(n.fsys.stagePath(st.id, ".key"))
	n.st = nil
}

// upload puts the staged content in S3 if it holds changes. It returns
// the failure of this upload (or of the last one, if nothing changed
// since), so that fsync and close report it.
func (n *node) upload(ctx context.Context) error {
	n.upMu.Lock()
	defer n.upMu.Unlock()
	n.mu.Lock()
	st := n.st
	if st == nil || !st.dirty || n.deleted {
		err := n.upErr
		n.mu.Unlock()
		return err
	}
	gen, key := st.gen, st.key
	strm := st.stream
	st.stream, st.streamable = nil, false // the object exists now: later changes upload whole
	n.mu.Unlock()

	st.io.RLock()
	size := st.sz
	var err error
	if strm != nil && strm.key == key {
		if err = strm.finish(ctx, size); err != nil {
			n.fsys.log.Warn("streaming upload failed; uploading the whole file", "key", key, "err", err)
			strm.abort()
			strm = nil
		}
	} else if strm != nil {
		strm.abort() // renamed since it started
		strm = nil
	}
	if strm == nil {
		_, err = n.fsys.o.Client.PutObject(ctx, n.fsys.o.Bucket, key, io.NewSectionReader(st.f, 0, size), size, minio.PutObjectOptions{
			PartSize: n.fsys.o.PartSize, NumThreads: n.fsys.o.Uploads, ContentType: "application/octet-stream",
		})
	}
	st.io.RUnlock()

	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		n.upErr = fmt.Errorf("upload %s: %w", key, err)
		return n.upErr
	}
	n.upErr = nil
	n.size, n.mtime = size, time.Now()
	if st.gen == gen && n.st == st {
		st.dirty = false
		os.Remove(n.fsys.stagePath(st.id, ".key"))
		st.journaled = false
		n.fsys.markDirty(n, false)
	}
	rel := strings.TrimPrefix(key, n.fsys.o.Prefix)
	dir, name := "", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, name = rel[:i], rel[i+1:]
	}
	n.fsys.setEntry(dir, name, &entry{size: size, mtime: n.mtime, local: st.dirty})
	n.dropStage()
	return nil
}

// discard forgets a file that was unlinked or replaced: its staged data
// is not uploaded (an upload in flight is waited for first).
func (n *node) discard() {
	n.upMu.Lock()
	defer n.upMu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deleted = true
	if st := n.st; st != nil {
		st.noStream()
		if st.dirty {
			st.dirty = false
			n.fsys.markDirty(n, false)
		}
		os.Remove(n.fsys.stagePath(st.id, ".key"))
		n.dropStage()
	}
}

// truncate sets a file's size. Without an open handle (truncate(1)), the
// result is uploaded at once.
func (n *node) truncate(ctx context.Context, size int64) syscall.Errno {
	n.mu.Lock()
	st, err := n.ensureStage(ctx, size == 0)
	if err != nil {
		n.mu.Unlock()
		return n.fsys.eio("truncate", n.fsys.key(n.path()), err)
	}
	st.key = n.fsys.key(n.path())
	st.io.Lock()
	err = st.f.Truncate(size)
	if err == nil {
		st.sz = size
	}
	st.io.Unlock()
	if err != nil {
		n.mu.Unlock()
		return n.fsys.eio("truncate staged file", st.key, err)
	}
	n.changed(st)
	st.noStream()
	st.streamable = size == 0
	inUse := st.opens > 0
	n.mu.Unlock()
	if !inUse {
		if err := n.upload(ctx); err != nil {
			return n.fsys.eio("truncate", st.key, err)
		}
	}
	return 0
}

// Create makes a new, empty, staged file; close uploads it (even empty).
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	c := &node{fsys: n.fsys, mtime: time.Now()}
	ch := n.NewInode(ctx, c, fs.StableAttr{Mode: syscall.S_IFREG})
	c.mu.Lock()
	st, err := func() (*stage, error) {
		id := newID()
		f, err := os.OpenFile(n.fsys.stagePath(id, ".data"), os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		st := &stage{f: f, id: id, key: n.fsys.key(join(n.path(), name)), opens: 1, streamable: true}
		c.st = st
		return st, nil
	}()
	if err != nil {
		c.mu.Unlock()
		return nil, nil, 0, n.fsys.eio("create staged file", n.fsys.key(join(n.path(), name)), err)
	}
	c.changed(st)
	c.mu.Unlock()
	n.fsys.setEntry(n.path(), name, &entry{mtime: c.mtime, local: true})
	c.attr(&out.Attr)
	return ch, &handle{n: c, write: true}, 0, 0
}

// Open: a handle that may write stages the file (downloading it unless
// O_TRUNC); a read-only one reads with ranged GETs.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.dir {
		return nil, 0, syscall.EISDIR
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	trunc := flags&syscall.O_TRUNC != 0
	if !write {
		n.mu.Lock()
		size := n.size
		n.mu.Unlock()
		return &handle{n: n, rd: n.fsys.newReader(n.fsys.key(n.path()), size)}, 0, 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st, err := n.ensureStage(ctx, trunc)
	if err != nil {
		return nil, 0, n.fsys.eio("open for writing", n.fsys.key(n.path()), err)
	}
	st.key = n.fsys.key(n.path())
	st.opens++
	if trunc && st.sz != 0 {
		st.io.Lock()
		err := st.f.Truncate(0)
		st.sz = 0
		st.io.Unlock()
		if err != nil {
			st.opens--
			return nil, 0, n.fsys.eio("truncate staged file", st.key, err)
		}
		n.changed(st)
		st.noStream()
		st.streamable = true
	}
	return &handle{n: n, write: true}, 0, 0
}

// handle is an open file.
type handle struct {
	n     *node
	write bool
	rd    *reader
}

var (
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileFlusher  = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n := h.n
	n.mu.Lock()
	st := n.st
	n.mu.Unlock()
	if st != nil {
		st.io.RLock()
		defer st.io.RUnlock()
		k, err := st.f.ReadAt(dest, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, n.fsys.eio("read staged file", st.key, err)
		}
		return fuse.ReadResultData(dest[:k]), 0
	}
	if h.rd == nil {
		return fuse.ReadResultData(nil), 0
	}
	k, err := h.rd.read(ctx, dest, off)
	if err != nil {
		return nil, n.fsys.eio("read", h.rd.key, err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n := h.n
	n.mu.Lock()
	st := n.st
	n.mu.Unlock()
	if !h.write || st == nil {
		return 0, syscall.EBADF
	}
	st.io.Lock()
	isAppend := off == st.sz
	k, err := st.f.WriteAt(data, off)
	if end := off + int64(k); end > st.sz {
		st.sz = end
	}
	size := st.sz
	st.io.Unlock()
	n.mu.Lock()
	n.changed(st)
	if !isAppend {
		st.noStream()
	} else if err == nil {
		n.appended(ctx, st, size)
	}
	n.mu.Unlock()
	if err != nil {
		return uint32(k), n.fsys.eio("write staged file", st.key, err)
	}
	return uint32(k), 0
}

// Flush runs at every close of a descriptor: it uploads (and waits),
// or with AsyncClose queues the upload and returns.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if !h.write {
		return 0
	}
	n := h.n
	n.mu.Lock()
	st := n.st
	if st == nil || !st.dirty {
		err := n.upErr
		n.mu.Unlock()
		if err != nil {
			return n.fsys.eio("close", n.fsys.key(n.path()), err)
		}
		return 0
	}
	st.key = n.fsys.key(n.path())
	size := st.sz
	async := n.fsys.o.AsyncClose && n.fsys.reserve(size)
	if async {
		st.pending++
	}
	n.mu.Unlock()
	if !async {
		if err := n.upload(ctx); err != nil {
			return n.fsys.eio("close", st.key, err)
		}
		return 0
	}
	n.fsys.bg.Add(1)
	go func() {
		defer n.fsys.bg.Done()
		defer n.fsys.release(size)
		n.fsys.bgSem <- struct{}{}
		err := n.upload(context.Background())
		<-n.fsys.bgSem
		if err != nil {
			n.fsys.log.Error("background upload failed; kept staged, fsync or unmount retries it", "key", st.key, "err", err)
		}
		n.mu.Lock()
		st.pending--
		n.dropStage()
		n.mu.Unlock()
	}()
	return 0
}

// reserve accounts size bytes to background uploads, if under MaxStaged.
func (f *FS) reserve(size int64) bool {
	f.stagedMu.Lock()
	defer f.stagedMu.Unlock()
	if f.staged > 0 && f.staged+size > f.o.MaxStaged {
		return false
	}
	f.staged += size
	return true
}

func (f *FS) release(size int64) {
	f.stagedMu.Lock()
	defer f.stagedMu.Unlock()
	f.staged -= size
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	if h.rd != nil {
		h.rd.close()
	}
	if !h.write {
		return 0
	}
	n := h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.st != nil {
		n.st.opens--
		n.dropStage()
	}
	return 0
}

// Recover uploads what a previous process left journaled in CacheDir
// (staged data whose upload had not finished), and removes stale staged
// copies. Call it before Mount.
func (f *FS) Recover(ctx context.Context) (int, error) {
	keys, err := filepath.Glob(filepath.Join(f.o.CacheDir, "*.key"))
	if err != nil {
		return 0, err
	}
	var errs []error
	done := 0
	for _, kf := range keys {
		id := strings.TrimSuffix(filepath.Base(kf), ".key")
		key, err := os.ReadFile(kf)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		data := f.stagePath(id, ".data")
		df, err := os.Open(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("journal %s: %w", kf, err))
			continue
		}
		st, err := df.Stat()
		if err == nil {
			_, err = f.o.Client.PutObject(ctx, f.o.Bucket, string(key), df, st.Size(), minio.PutObjectOptions{PartSize: f.o.PartSize, NumThreads: f.o.Uploads})
		}
		df.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("recover %s: %w", key, err))
			continue
		}
		f.log.Warn("uploaded data a previous mount process left staged", "key", string(key))
		os.Remove(kf)
		os.Remove(data)
		done++
	}
	if len(errs) == 0 {
		datas, _ := filepath.Glob(filepath.Join(f.o.CacheDir, "*.data"))
		for _, d := range datas {
			if _, err := os.Stat(strings.TrimSuffix(d, ".data") + ".key"); errors.Is(err, os.ErrNotExist) {
				os.Remove(d)
			}
		}
	}
	return done, errors.Join(errs...)
}
