package s3fs

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/minio/minio-go/v7"
	"golang.org/x/sys/unix"
)

// node is a file or a directory.
type node struct {
	fs.Inode
	fsys *FS
	dir  bool

	mu      sync.Mutex // the fields below
	size    int64
	mtime   time.Time
	st      *stage // staged content, while written or not yet uploaded
	deleted bool
	upErr   error // the last upload's failure, reported by fsync and close

	upMu sync.Mutex // one upload of this file at a time
}

var (
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
	_ fs.NodeFsyncer        = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
)

// path is the node's path from the root ("" for the root).
func (n *node) path() string { return n.Path(nil) }

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (n *node) newChild(ctx context.Context, name string, e entry) *fs.Inode {
	mode := uint32(syscall.S_IFREG)
	if e.dir {
		mode = syscall.S_IFDIR
	}
	if ch := n.GetChild(name); ch != nil {
		if c, ok := ch.Operations().(*node); ok && c.dir == e.dir {
			c.mu.Lock()
			if c.st == nil {
				c.size, c.mtime = e.size, e.mtime
			}
			c.mu.Unlock()
			return ch
		}
	}
	c := &node{fsys: n.fsys, dir: e.dir, size: e.size, mtime: e.mtime}
	return n.NewInode(ctx, c, fs.StableAttr{Mode: mode})
}

// Lookup answers from the directory's listing: no HEAD per name.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e, ok, err := n.fsys.lookup(ctx, n.path(), name)
	if err != nil {
		return nil, n.fsys.eio("list", n.fsys.dirKey(n.path()), err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	ch := n.newChild(ctx, name, e)
	c := ch.Operations().(*node)
	c.attr(&out.Attr)
	return ch, 0
}

// OpendirHandle lists the directory once; the listing answers the
// handle's READDIRPLUS lookups too, so ls -l is one listing, not one per
// entry.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	names, entries, err := n.fsys.names(ctx, n.path())
	if err != nil {
		return nil, 0, n.fsys.eio("list", n.fsys.dirKey(n.path()), err)
	}
	return &dirHandle{n: n, names: names, entries: entries}, 0, 0
}

type dirHandle struct {
	n       *node
	names   []string
	entries map[string]entry
	pos     int
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileLookuper     = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
)

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.pos >= len(h.names) {
		return nil, 0
	}
	name := h.names[h.pos]
	h.pos++
	mode := uint32(syscall.S_IFREG)
	if h.entries[name].dir {
		mode = syscall.S_IFDIR
	}
	return &fuse.DirEntry{Name: name, Mode: mode, Off: uint64(h.pos)}, 0
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.pos = int(min(off, uint64(len(h.names))))
	return 0
}

func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e, ok := h.entries[name]
	if !ok {
		return h.n.Lookup(ctx, name, out)
	}
	ch := h.n.newChild(ctx, name, e)
	ch.Operations().(*node).attr(&out.Attr)
	return ch, 0
}

func (n *node) attr(a *fuse.Attr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	size := n.size
	if n.st != nil {
		size = n.st.size()
	}
	n.fsys.fillAttr(a, n.dir, size, n.mtime)
}

// Getattr refreshes a file's size from its directory's listing (cached):
// objects rewritten by another client show their new size.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !n.dir {
		n.mu.Lock()
		staged := n.st != nil
		n.mu.Unlock()
		if name, parent := n.Parent(); !staged && parent != nil {
			if e, ok, err := n.fsys.lookup(ctx, parent.Path(nil), name); err == nil && ok && !e.dir {
				n.mu.Lock()
				if n.st == nil {
					n.size, n.mtime = e.size, e.mtime
				}
				n.mu.Unlock()
			}
		}
	}
	n.attr(&out.Attr)
	out.SetTimeout(n.fsys.o.CacheTTL)
	return 0
}

// Setattr: size changes truncate; mode, owner and times are accepted and
// not stored (every entry shows the volume's).
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		if n.dir {
			return syscall.EISDIR
		}
		if errno := n.truncate(ctx, int64(size)); errno != 0 {
			return errno
		}
	}
	if mtime, ok := in.GetMTime(); ok {
		n.mu.Lock()
		n.mtime = mtime
		n.mu.Unlock()
	}
	n.attr(&out.Attr)
	return 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	p := join(n.path(), name)
	if _, ok, err := n.fsys.lookup(ctx, n.path(), name); err != nil {
		return nil, n.fsys.eio("list", n.fsys.dirKey(n.path()), err)
	} else if ok {
		return nil, syscall.EEXIST
	}
	key := n.fsys.dirKey(p)
	if _, err := n.fsys.o.Client.PutObject(ctx, n.fsys.o.Bucket, key, bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
		return nil, n.fsys.eio("mkdir", key, err)
	}
	e := entry{dir: true, mtime: time.Now()}
	n.fsys.setEntry(n.path(), name, &e)
	n.fsys.invalidate(p)
	ch := n.newChild(ctx, name, e)
	ch.Operations().(*node).attr(&out.Attr)
	return ch, 0
}

// Rmdir refuses a directory with anything in it, in S3 or staged here.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	p := join(n.path(), name)
	e, ok, err := n.fsys.lookup(ctx, n.path(), name)
	if err != nil {
		return n.fsys.eio("list", n.fsys.dirKey(n.path()), err)
	}
	if !ok {
		return syscall.ENOENT
	}
	if !e.dir {
		return syscall.ENOTDIR
	}
	key := n.fsys.dirKey(p)
	ctx2, cancel := context.WithCancel(ctx)
	defer cancel()
	for o := range n.fsys.o.Client.ListObjects(ctx2, n.fsys.o.Bucket, minio.ListObjectsOptions{Prefix: key, Recursive: true}) {
		if o.Err != nil {
			return n.fsys.eio("list", key, o.Err)
		}
		if o.Key != key {
			return syscall.ENOTEMPTY
		}
	}
	if names, _, err := n.fsys.names(ctx, p); err == nil && len(names) > 0 {
		return syscall.ENOTEMPTY
	}
	if err := n.fsys.o.Client.RemoveObject(ctx, n.fsys.o.Bucket, key, minio.RemoveObjectOptions{}); err != nil && !isNoSuchKey(err) {
		return n.fsys.eio("rmdir", key, err)
	}
	n.fsys.setEntry(n.path(), name, nil)
	n.fsys.invalidate(p)
	return 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	p := join(n.path(), name)
	e, ok, err := n.fsys.lookup(ctx, n.path(), name)
	if err != nil {
		return n.fsys.eio("list", n.fsys.dirKey(n.path()), err)
	}
	if !ok {
		return syscall.ENOENT
	}
	if e.dir {
		return syscall.EISDIR
	}
	if ch := n.GetChild(name); ch != nil {
		if c, ok := ch.Operations().(*node); ok {
			c.discard()
		}
	}
	key := n.fsys.key(p)
	if err := n.fsys.o.Client.RemoveObject(ctx, n.fsys.o.Bucket, key, minio.RemoveObjectOptions{}); err != nil && !isNoSuchKey(err) {
		return n.fsys.eio("unlink", key, err)
	}
	n.fsys.setEntry(n.path(), name, nil)
	return 0
}

// Rename is copy + delete: not atomic. A file's pending data is uploaded
// first; a directory is copied object by object.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if flags&unix.RENAME_EXCHANGE != 0 {
		return syscall.ENOTSUP
	}
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	src := join(n.path(), name)
	dst := join(np.path(), newName)
	e, ok, err := n.fsys.lookup(ctx, n.path(), name)
	if err != nil {
		return n.fsys.eio("list", n.fsys.dirKey(n.path()), err)
	}
	if !ok {
		return syscall.ENOENT
	}
	de, exists, err := n.fsys.lookup(ctx, np.path(), newName)
	if err != nil {
		return n.fsys.eio("list", n.fsys.dirKey(np.path()), err)
	}
	if exists {
		if flags&unix.RENAME_NOREPLACE != 0 {
			return syscall.EEXIST
		}
		if e.dir && !de.dir {
			return syscall.ENOTDIR
		}
		if !e.dir && de.dir {
			return syscall.EISDIR
		}
	}
	if src == dst {
		return 0
	}
	if e.dir {
		if exists {
			if names, _, err := n.fsys.names(ctx, dst); err != nil {
				return n.fsys.eio("list", n.fsys.dirKey(dst), err)
			} else if len(names) > 0 {
				return syscall.ENOTEMPTY
			}
		}
		if strings.HasPrefix(dst+"/", src+"/") {
			return syscall.EINVAL
		}
		if errno := n.fsys.renameDir(ctx, src, dst); errno != 0 {
			return errno
		}
	} else {
		if ch := n.GetChild(name); ch != nil {
			if c, ok := ch.Operations().(*node); ok {
				if err := c.upload(ctx); err != nil {
					return n.fsys.eio("upload before rename", n.fsys.key(src), err)
				}
			}
		}
		if errno := n.fsys.renameObject(ctx, n.fsys.key(src), n.fsys.key(dst)); errno != 0 {
			return errno
		}
		if exists {
			if ch := np.GetChild(newName); ch != nil {
				if c, ok := ch.Operations().(*node); ok {
					c.discard()
				}
			}
		}
	}
	n.fsys.setEntry(n.path(), name, nil)
	e.local = false
	n.fsys.setEntry(np.path(), newName, &e)
	n.fsys.invalidate(np.path())
	return 0
}

func (f *FS) renameObject(ctx context.Context, src, dst string) syscall.Errno {
	_, err := f.o.Client.CopyObject(ctx, minio.CopyDestOptions{Bucket: f.o.Bucket, Object: dst}, minio.CopySrcOptions{Bucket: f.o.Bucket, Object: src})
	if err != nil {
		return f.eio("rename: copy to "+dst, src, err)
	}
	if err := f.o.Client.RemoveObject(ctx, f.o.Bucket, src, minio.RemoveObjectOptions{}); err != nil {
		return f.eio("rename: delete after copy to "+dst, src, err)
	}
	return 0
}

// renameDir copies every object under src to dst, then deletes the
// sources. A failure half way leaves both trees; nothing is deleted before
// its copy exists.
func (f *FS) renameDir(ctx context.Context, src, dst string) syscall.Errno {
	f.waitUploads()
	sk, dk := f.dirKey(src), f.dirKey(dst)
	var keys []string
	ctx2, cancel := context.WithCancel(ctx)
	defer cancel()
	for o := range f.o.Client.ListObjects(ctx2, f.o.Bucket, minio.ListObjectsOptions{Prefix: sk, Recursive: true}) {
		if o.Err != nil {
			return f.eio("list", sk, o.Err)
		}
		keys = append(keys, o.Key)
	}
	hasMarker := false
	for _, k := range keys {
		if k == sk {
			hasMarker = true
		}
		d := dk + strings.TrimPrefix(k, sk)
		if strings.HasSuffix(k, "/") { // a directory marker: made, not copied
			if _, err := f.o.Client.PutObject(ctx, f.o.Bucket, d, bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
				return f.eio("rename: marker", d, err)
			}
			continue
		}
		if _, err := f.o.Client.CopyObject(ctx, minio.CopyDestOptions{Bucket: f.o.Bucket, Object: d}, minio.CopySrcOptions{Bucket: f.o.Bucket, Object: k}); err != nil {
			return f.eio("rename: copy to "+d, k, err)
		}
	}
	if !hasMarker {
		if _, err := f.o.Client.PutObject(ctx, f.o.Bucket, dk, bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
			return f.eio("rename: marker", dk, err)
		}
	}
	for _, k := range keys {
		if err := f.o.Client.RemoveObject(ctx, f.o.Bucket, k, minio.RemoveObjectOptions{}); err != nil && !isNoSuchKey(err) {
			return f.eio("rename: delete after copy", k, err)
		}
	}
	f.lmu.Lock()
	for p, l := range f.listings {
		if p == src || strings.HasPrefix(p, src+"/") || p == dst || strings.HasPrefix(p, dst+"/") {
			l.mu.Lock()
			l.valid = false
			l.entries = map[string]entry{}
			l.mu.Unlock()
		}
	}
	f.lmu.Unlock()
	return 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	// S3 has no size limit: answer a large, mostly free file system so
	// that tools checking free space proceed.
	const blocks = 1 << 40 / 4096
	out.Bsize, out.Frsize = 4096, 4096
	out.Blocks, out.Bfree, out.Bavail = blocks, blocks, blocks
	out.Files, out.Ffree = 1<<30, 1<<30
	out.NameLen = 1024
	return 0
}

func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if n.dir {
		return 0
	}
	if err := n.upload(ctx); err != nil {
		return n.fsys.eio("fsync", n.fsys.key(n.path()), err)
	}
	return 0
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.ENOTSUP
}

func isNoSuchKey(err error) bool {
	var r minio.ErrorResponse
	if errors.As(err, &r) {
		return r.Code == "NoSuchKey"
	}
	return minio.ToErrorResponse(err).Code == "NoSuchKey"
}
