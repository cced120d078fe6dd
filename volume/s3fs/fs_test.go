package s3fs

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dockplug/dockplug/internal/s3test"
)

// mounted is one file system mounted for a test.
type mounted struct {
	t      *testing.T
	srv    *s3test.Server
	cli    *minio.Client
	bucket string
	prefix string
	dir    string
	fsys   *FS
	closed bool

	unmount func() error
}

func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if s3test.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// mount starts versitygw and mounts a fresh prefix of a fresh bucket.
func mount(t *testing.T, tweak func(*Options)) *mounted {
	t.Helper()
	needFUSE(t)
	srv := s3test.Start(t)
	m := &mounted{t: t, srv: srv, cli: srv.Client(), bucket: srv.Bucket(t), prefix: "vol/"}
	m.mountAgain(tweak)
	return m
}

func (m *mounted) mountAgain(tweak func(*Options)) {
	t := m.t
	t.Helper()
	dir := t.TempDir()
	o := Options{Client: m.cli, Bucket: m.bucket, Prefix: m.prefix, CacheDir: filepath.Join(t.TempDir(), "cache"),
		PartSize: 5 << 20, ChunkSize: 1 << 20,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if tweak != nil {
		tweak(&o)
	}
	f, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := f.Mount(dir, "s3fs-test")
	if err != nil {
		t.Fatal(err)
	}
	m.dir, m.fsys, m.closed = dir, f, false
	t.Cleanup(func() {
		if m.closed {
			return
		}
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
		srv.Wait()
		if err := f.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	m.unmount = func() error {
		m.closed = true
		if err := srv.Unmount(); err != nil {
			return err
		}
		srv.Wait()
		return f.Close(context.Background())
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func (m *mounted) path(p string) string { return filepath.Join(m.dir, p) }

// object reads an object straight from S3 (nil if absent).
func (m *mounted) object(key string) []byte {
	m.t.Helper()
	o, err := m.cli.GetObject(context.Background(), m.bucket, m.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		m.t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return nil
	}
	if err != nil {
		m.t.Fatalf("get %s: %v", key, err)
	}
	return b
}

func (m *mounted) put(key string, data []byte) {
	m.t.Helper()
	if _, err := m.cli.PutObject(context.Background(), m.bucket, m.prefix+key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		m.t.Fatal(err)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestWriteReadBackAndInS3AfterClose(t *testing.T) {
	m := mount(t, nil)
	if err := os.WriteFile(m.path("a.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	// close waited for the upload (the default): the object is there.
	if got := m.object("a.txt"); string(got) != "hello" {
		t.Fatalf("in S3 after close: %q", got)
	}
	got, err := os.ReadFile(m.path("a.txt"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("read back: %q, %v", got, err)
	}
	st, err := os.Stat(m.path("a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 5 || st.Mode().Perm() != 0o644 || !st.Mode().IsRegular() {
		t.Fatalf("stat: size %d mode %v", st.Size(), st.Mode())
	}
	// An empty file is an object too.
	f, err := os.Create(m.path("empty"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := m.object("empty"); got == nil || len(got) != 0 {
		t.Fatalf("empty file in S3: %v", got)
	}
}

func TestAppendTruncateOverwrite(t *testing.T) {
	m := mount(t, nil)
	p := m.path("f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("abc"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.object("f"); string(got) != "0123456789abc" {
		t.Fatalf("after append: %q", got)
	}
	if err := os.Truncate(p, 4); err != nil {
		t.Fatal(err)
	}
	if got := m.object("f"); string(got) != "0123" {
		t.Fatalf("after truncate(4): %q", got)
	}
	if err := os.Truncate(p, 6); err != nil {
		t.Fatal(err)
	}
	if got := m.object("f"); string(got) != "0123\x00\x00" {
		t.Fatalf("after truncate(6): %q", got)
	}
	// O_TRUNC rewrite.
	if err := os.WriteFile(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := m.object("f"); string(got) != "new" {
		t.Fatalf("after O_TRUNC: %q", got)
	}
	// Write in the middle through a read-write handle.
	f, err = os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("E"), 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	n, _ := f.ReadAt(buf, 0)
	if string(buf[:n]) != "nE" {
		t.Fatalf("read through the writing handle: %q", buf[:n])
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.object("f"); string(got) != "nE" {
		t.Fatalf("after pwrite+ftruncate: %q", got)
	}
}

func TestMkdirRmdirUnlinkRename(t *testing.T) {
	m := mount(t, nil)
	if err := os.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := m.object("d/"); got == nil {
		t.Fatal("mkdir made no marker object")
	}
	if err := os.Mkdir(m.path("d"), 0o755); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second mkdir: %v", err)
	}
	if err := os.WriteFile(m.path("d/x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("d")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a non-empty dir: %v", err)
	}
	// Rename a file, over an existing one.
	if err := os.WriteFile(m.path("d/y"), []byte("y"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.path("d/x"), m.path("d/y")); err != nil {
		t.Fatal(err)
	}
	if got := m.object("d/y"); string(got) != "x" || m.object("d/x") != nil {
		t.Fatalf("after rename: y=%q x=%v", got, m.object("d/x"))
	}
	if _, err := os.Stat(m.path("d/x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat of the renamed file: %v", err)
	}
	// Rename a directory tree.
	if err := os.MkdirAll(m.path("d/sub/deeper"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("d/sub/deeper/z"), []byte("z"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.path("d"), m.path("e")); err != nil {
		t.Fatal(err)
	}
	if got := m.object("e/sub/deeper/z"); string(got) != "z" {
		t.Fatalf("after dir rename: %q", got)
	}
	if m.object("d/y") != nil {
		t.Fatal("dir rename left the source")
	}
	got, err := os.ReadFile(m.path("e/y"))
	if err != nil || string(got) != "x" {
		t.Fatalf("read through the renamed dir: %q, %v", got, err)
	}
	// Unlink, rmdir.
	for _, p := range []string{"e/y", "e/sub/deeper/z"} {
		if err := os.Remove(m.path(p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"e/sub/deeper", "e/sub", "e"} {
		if err := os.Remove(m.path(p)); err != nil {
			t.Fatalf("rmdir %s: %v", p, err)
		}
	}
	left := m.keys("")
	if len(left) != 0 {
		t.Fatalf("objects left: %v", left)
	}
}

func (m *mounted) keys(under string) []string {
	m.t.Helper()
	var out []string
	for o := range m.cli.ListObjects(context.Background(), m.bucket, minio.ListObjectsOptions{Prefix: m.prefix + under, Recursive: true}) {
		if o.Err != nil {
			m.t.Fatal(o.Err)
		}
		out = append(out, o.Key)
	}
	return out
}

func TestUnsupportedAreCleanErrors(t *testing.T) {
	m := mount(t, nil)
	if err := os.WriteFile(m.path("f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(m.path("f"), m.path("g")); !errors.Is(err, syscall.ENOTSUP) && !errors.Is(err, syscall.EPERM) {
		t.Fatalf("link: %v, want ENOTSUP", err)
	}
	if err := os.Symlink("f", m.path("s")); !errors.Is(err, syscall.ENOTSUP) && !errors.Is(err, syscall.EPERM) {
		t.Fatalf("symlink: %v, want ENOTSUP", err)
	}
	// chmod is accepted and not stored.
	if err := os.Chmod(m.path("f"), 0o600); err != nil {
		t.Fatalf("chmod: %v", err)
	}
}

func TestLargeDirectoryPagesAndOtherClientsObjects(t *testing.T) {
	m := mount(t, func(o *Options) { o.CacheTTL = 0 })
	const n = 1100 // more than one page of 1000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m.put(fmt.Sprintf("big/f%05d", i), []byte("x"))
		}()
	}
	wg.Wait()
	m.put("big/sub/inner", []byte("y")) // a directory only by prefix
	ents, err := os.ReadDir(m.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n+1 {
		t.Fatalf("readdir: %d entries, want %d", len(ents), n+1)
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	if !sort.StringsAreSorted(names) || names[0] != "f00000" || !ents[n].IsDir() || ents[n].Name() != "sub" {
		t.Fatalf("readdir: first %q, last %q (dir %v)", names[0], names[n], ents[n].IsDir())
	}
	// ls -l: stat every entry (answered from the listing).
	for _, e := range ents[:50] {
		if _, err := e.Info(); err != nil {
			t.Fatal(err)
		}
	}
	// An object written by another client appears (CacheTTL 0).
	m.put("late", []byte("from elsewhere"))
	got, err := os.ReadFile(m.path("late"))
	if err != nil || string(got) != "from elsewhere" {
		t.Fatalf("object from another client: %q, %v", got, err)
	}
	// and its rewrite with another size.
	m.put("late", []byte("longer, from elsewhere"))
	got, err = os.ReadFile(m.path("late"))
	if err != nil || string(got) != "longer, from elsewhere" {
		t.Fatalf("rewritten object: %q, %v", got, err)
	}
}

func TestBigFileMultipartAndConcurrentReaders(t *testing.T) {
	m := mount(t, nil)
	data := randBytes(23<<20 + 123) // 5 parts of 5 MiB, the last one short
	if err := os.WriteFile(m.path("big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := m.object("big"); !bytes.Equal(got, data) {
		t.Fatalf("object in S3: %d bytes, want %d identical", len(got), len(data))
	}
	st, err := m.cli.StatObject(context.Background(), m.bucket, m.prefix+"big", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains([]byte(st.ETag), []byte("-")) {
		t.Errorf("ETag %q: not a multipart upload", st.ETag)
	}
	// A fresh mount reads it from S3 (no staged copy).
	m.mountAgain(nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(m.path("big"))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			if r%2 == 1 { // half of them read from the middle, backwards in steps
				buf := make([]byte, 300000)
				for off := int64(len(data)) - 300000; off > 0; off -= 3 << 20 {
					n, err := f.ReadAt(buf, off)
					if err != nil && err != io.EOF || !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
						errs <- fmt.Errorf("reader %d at %d: %v", r, off, err)
						return
					}
				}
				return
			}
			got, err := io.ReadAll(f)
			if err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("reader %d: %d bytes, %v", r, len(got), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAsyncCloseUploadsByUnmount(t *testing.T) {
	m := mount(t, func(o *Options) { o.AsyncClose = true })
	for i := range 50 {
		if err := os.WriteFile(m.path(fmt.Sprintf("f%d", i)), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// fsync waits, whatever the close mode.
	f, err := os.Create(m.path("synced"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("durable")
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := m.object("synced"); string(got) != "durable" {
		t.Fatalf("after fsync: %q", got)
	}
	f.Close()
	// Listed while uploads may still run.
	ents, err := os.ReadDir(m.dir)
	if err != nil || len(ents) != 51 {
		t.Fatalf("readdir: %d entries, %v", len(ents), err)
	}
	if err := m.unmount(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if got := m.object(fmt.Sprintf("f%d", i)); string(got) != fmt.Sprint(i) {
			t.Fatalf("f%d after unmount: %q", i, got)
		}
	}
}

func TestFsyncReportsUploadErrors(t *testing.T) {
	m := mount(t, nil)
	f, err := os.Create(m.path("doomed"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("data"); err != nil {
		t.Fatal(err)
	}
	// The server goes away: the upload cannot succeed.
	if err := m.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync with S3 gone: %v, want EIO", err)
	}
	if err := f.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("close with S3 gone: %v, want EIO", err)
	}
	// The data stays journaled for the next mount process.
	keys, _ := filepath.Glob(filepath.Join(m.fsys.o.CacheDir, "*.key"))
	if len(keys) != 1 {
		t.Fatalf("journal: %v", keys)
	}
	m.closed = true // the server is gone: unmount without waiting for uploads
	syscall.Unmount(m.dir, syscall.MNT_DETACH)
}

func TestRecoverUploadsWhatAKilledProcessLeft(t *testing.T) {
	needFUSE(t)
	srv := s3test.Start(t)
	cli := srv.Client()
	bucket := srv.Bucket(t)
	cache := t.TempDir()
	os.WriteFile(filepath.Join(cache, "abc.data"), []byte("staged"), 0o600)
	os.WriteFile(filepath.Join(cache, "abc.key"), []byte("vol/left"), 0o600)
	os.WriteFile(filepath.Join(cache, "clean.data"), []byte("copy"), 0o600)
	f, err := New(Options{Client: cli, Bucket: bucket, Prefix: "vol/", CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := f.Recover(ctx)
	if err != nil || n != 1 {
		t.Fatalf("recover: %d, %v", n, err)
	}
	o, _ := cli.GetObject(ctx, bucket, "vol/left", minio.GetObjectOptions{})
	got, _ := io.ReadAll(o)
	if string(got) != "staged" {
		t.Fatalf("recovered object: %q", got)
	}
	if left, _ := os.ReadDir(cache); len(left) != 0 {
		t.Fatalf("cache dir after recover: %v", left)
	}
}

func TestPermissionsFromOptions(t *testing.T) {
	m := mount(t, func(o *Options) { o.UID, o.GID, o.Mode = 1234, 5678, 0o750 })
	if err := os.Mkdir(m.path("d"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("d/f"), []byte("x"), 0o777); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{"": 0o750 | os.ModeDir, "d": 0o750 | os.ModeDir, "d/f": 0o640} {
		st, err := os.Stat(m.path(p))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode() != want || sys.Uid != 1234 || sys.Gid != 5678 {
			t.Errorf("%q: mode %v uid %d gid %d, want %v 1234 5678", p, st.Mode(), sys.Uid, sys.Gid, want)
		}
	}
}

// The kernel checks the volume's uid, gid and mode (default_permissions):
// the owner may write, others may only read.
func TestPermissionsEnforced(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	m := mount(t, func(o *Options) { o.UID, o.GID, o.Mode = 4321, 4321, 0o755 })
	// Let the other users reach the mount point.
	if err := os.Chmod(filepath.Dir(m.dir), 0o755); err != nil {
		t.Fatal(err)
	}
	as := func(uid string, args ...string) error {
		cmd := exec.Command(setpriv, append([]string{"--reuid=" + uid, "--regid=" + uid, "--clear-groups", "--"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := as("4321", "sh", "-c", "echo mine > "+m.path("owned")); err != nil {
		t.Fatalf("owner cannot write: %v", err)
	}
	if got := m.object("owned"); string(got) != "mine\n" {
		t.Fatalf("owner's file in S3: %q", got)
	}
	if err := as("4322", "sh", "-c", "echo theirs > "+m.path("other")); err == nil {
		t.Fatal("another user could write")
	}
	if err := as("4322", "cat", m.path("owned")); err != nil {
		t.Fatalf("another user cannot read: %v", err)
	}
	if m.object("other") != nil {
		t.Fatal("the refused write reached S3")
	}
}

// A file written sequentially streams its full parts while it is written;
// anything but appends falls back to one upload of the whole file.
func TestStreamingUpload(t *testing.T) {
	m := mount(t, nil)
	data := randBytes(12 << 20)
	f, err := os.Create(m.path("seq"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	// Two full parts have started before close: the multipart upload exists.
	n := 0
	for u := range m.cli.ListIncompleteUploads(context.Background(), m.bucket, m.prefix+"seq", false) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d multipart uploads in flight while writing, want 1", n)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := m.object("seq"); !bytes.Equal(got, data) {
		t.Fatalf("streamed object: %d bytes, want %d identical", len(got), len(data))
	}

	// A rewrite of the start after two parts went up: the whole file.
	f, err = os.Create(m.path("rewritten"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("HEAD"), 0); err != nil {
		t.Fatal(err)
	}
	// fsync in the middle, then more appends.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte("HEAD"), data[4:]...), "tail"...)
	if got := m.object("rewritten"); !bytes.Equal(got, want) {
		t.Fatalf("rewritten object: %d bytes, want %d identical", len(got), len(want))
	}
	// The aborted stream leaves no upload behind (the abort runs in the
	// background; the unmount waits for it).
	if err := m.unmount(); err != nil {
		t.Fatal(err)
	}
	for u := range m.cli.ListIncompleteUploads(context.Background(), m.bucket, m.prefix, true) {
		t.Errorf("multipart upload left: %+v", u)
	}
}
