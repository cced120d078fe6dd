package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dockplug/dockplug/internal/s3test"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/mounts"
)

// TestMain doubles as the mount process: the driver under test starts
// this test binary as "s3-mount --spec FILE".
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "s3-mount" && os.Args[2] == "--spec" {
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		if err := ServeMount(context.Background(), os.Args[3], log); err != nil {
			fmt.Fprintln(os.Stderr, "s3-mount:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// world is one S3 server, one bucket and a config file allowing it.
type world struct {
	t      *testing.T
	srv    *s3test.Server
	cli    *minio.Client
	bucket string
	config string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	srv := s3test.Start(t)
	w := &world{t: t, srv: srv, cli: srv.Client(), bucket: srv.Bucket(t)}
	w.config = w.writeConfig(fmt.Sprintf(`profiles:
  default:
    endpoint: %s
    region: %s
    access-key: %s
    secret-key: %s
  wrong:
    endpoint: %s
    access-key: %s
    secret-key: not-the-secret
  nowhere:
    endpoint: http://127.0.0.1:1
    access-key: a
    secret-key: b
allow-buckets: [%s, nosuchbucket, %s-other/only/this]
`, srv.Endpoint, s3test.Region, s3test.AccessKey, s3test.SecretKey, srv.Endpoint, s3test.AccessKey, w.bucket, w.bucket))
	return w
}

func (w *world) writeConfig(body string) string {
	p := filepath.Join(w.t.TempDir(), "s3.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// driver opens a driver (a "host") with its own state dir.
func (w *world) driver(stateDir string) *Driver {
	w.t.Helper()
	cfg, err := LoadConfig(w.config)
	if err != nil {
		w.t.Fatal(err)
	}
	if stateDir == "" {
		stateDir = w.t.TempDir()
	}
	exe, _ := os.Executable()
	d, err := New(context.Background(), DriverConfig{Config: cfg, StateDir: stateDir, MountCommand: []string{exe, "s3-mount"},
		Logger: slog.New(slog.NewTextHandler(testLog{w.t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { d.Close() })
	return d
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func (w *world) exists(key string) bool {
	_, err := w.cli.StatObject(context.Background(), w.bucket, key, minio.StatObjectOptions{})
	return err == nil
}

func (w *world) get(key string) string {
	w.t.Helper()
	o, err := w.cli.GetObject(context.Background(), w.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	b, err := io.ReadAll(o)
	if err != nil {
		w.t.Fatalf("get %s: %v", key, err)
	}
	return string(b)
}

var ctx = context.Background()

func TestCreateGetListRemoveAcrossHosts(t *testing.T) {
	w := newWorld(t)
	a, b := w.driver(""), w.driver("")
	opts := map[string]string{"bucket": w.bucket, "uid": "1000"}
	if err := a.Create(ctx, &volume.CreateRequest{Name: "v1", Opts: opts}); err != nil {
		t.Fatal(err)
	}
	if !w.exists(".dockplug/volumes/v1.json") {
		t.Fatal("no metadata object in the bucket")
	}
	// Idempotent with the same options, a conflict with others.
	if err := a.Create(ctx, &volume.CreateRequest{Name: "v1", Opts: opts}); err != nil {
		t.Fatalf("same create again: %v", err)
	}
	if err := b.Create(ctx, &volume.CreateRequest{Name: "v1", Opts: map[string]string{"bucket": w.bucket}}); plugin.StatusOf(err) != 409 {
		t.Fatalf("create with other options on another host: %v", err)
	}
	// The other host sees it: Get and List (scope global).
	g, err := b.Get(ctx, &volume.GetRequest{Name: "v1"})
	if err != nil || g.Volume.Name != "v1" || g.Volume.Status["bucket"] != w.bucket || g.Volume.CreatedAt.IsZero() {
		t.Fatalf("Get on the other host: %+v, %v", g, err)
	}
	ls, err := b.List(ctx)
	if err != nil || len(ls.Volumes) != 1 || ls.Volumes[0].Name != "v1" {
		t.Fatalf("List on the other host: %+v, %v", ls, err)
	}
	caps, _ := b.Capabilities(ctx)
	if caps.Capabilities.Scope != volume.ScopeGlobal {
		t.Fatalf("scope %q", caps.Capabilities.Scope)
	}
	// Not "not found" while some profiles cannot answer (nowhere, wrong):
	// the volume could be there.
	if _, err := b.Get(ctx, &volume.GetRequest{Name: "nope"}); err == nil || plugin.StatusOf(err) == 404 || !strings.Contains(err.Error(), "profile nowhere") {
		t.Fatalf("Get of a missing volume with unreachable profiles: %v", err)
	}
	// Data written under the prefix, then removed from the other host:
	// the plugin made the prefix, so the data goes too.
	w.cli.PutObject(ctx, w.bucket, "v1/file", strings.NewReader("x"), 1, minio.PutObjectOptions{})
	if err := b.Remove(ctx, &volume.RemoveRequest{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	if w.exists("v1/file") || w.exists(".dockplug/volumes/v1.json") {
		t.Fatal("remove left data or metadata")
	}
	// The first host learns it is gone.
	if _, err := a.Get(ctx, &volume.GetRequest{Name: "v1"}); plugin.StatusOf(err) != 404 {
		t.Fatalf("Get after remove elsewhere: %v", err)
	}
	if err := a.Remove(ctx, &volume.RemoveRequest{Name: "v1"}); err == nil {
		t.Fatalf("second remove: %v", err)
	}
}

func TestRemoveKeepsDataItDidNotCreate(t *testing.T) {
	w := newWorld(t)
	d := w.driver("")
	w.cli.PutObject(ctx, w.bucket, "existing/keep", strings.NewReader("k"), 1, minio.PutObjectOptions{})
	w.cli.PutObject(ctx, w.bucket, "doomed/go", strings.NewReader("g"), 1, minio.PutObjectOptions{})
	if err := d.Create(ctx, &volume.CreateRequest{Name: "keep", Opts: map[string]string{"bucket": w.bucket, "prefix": "existing"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Create(ctx, &volume.CreateRequest{Name: "del", Opts: map[string]string{"bucket": w.bucket, "prefix": "doomed", "delete-data": "true"}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"keep", "del"} {
		if err := d.Remove(ctx, &volume.RemoveRequest{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	if !w.exists("existing/keep") {
		t.Fatal("remove deleted a pre-existing prefix")
	}
	if w.exists("doomed/go") {
		t.Fatal("delete-data=true kept the data")
	}
}

func TestCreateErrorsRecordNothing(t *testing.T) {
	w := newWorld(t)
	d := w.driver("")
	for _, tc := range []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"bucket": w.bucket, "colour": "blue"}, "unknown option(s) colour"},
		{map[string]string{}, "bucket is required"},
		{map[string]string{"bucket": "notallowed"}, "not in the plugin's allow-buckets"},
		{map[string]string{"bucket": w.bucket + "-other", "prefix": "elsewhere"}, "not in the plugin's allow-buckets"},
		{map[string]string{"bucket": "nosuchbucket"}, "bucket nosuchbucket does not exist"},
		{map[string]string{"bucket": w.bucket, "profile": "wrong"}, "refused profile wrong's credentials"},
		{map[string]string{"bucket": w.bucket, "profile": "nowhere"}, "http://127.0.0.1:1"},
		{map[string]string{"bucket": w.bucket, "profile": "missing"}, `no S3 profile "missing"`},
	} {
		err := d.Create(ctx, &volume.CreateRequest{Name: "bad", Opts: tc.opts})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.opts, err, tc.want)
		}
	}
	if err := d.Create(ctx, &volume.CreateRequest{Name: "../x", Opts: map[string]string{"bucket": w.bucket}}); plugin.StatusOf(err) != 400 {
		t.Errorf("bad name: %v", err)
	}
	if w.exists(".dockplug/volumes/bad.json") {
		t.Fatal("a failed create left metadata")
	}
	if ls, err := d.List(ctx); err != nil || len(ls.Volumes) != 0 {
		t.Fatalf("list after failed creates: %+v, %v", ls, err)
	}
}

func TestConcurrentCreateOnTwoHostsOneWins(t *testing.T) {
	w := newWorld(t)
	hosts := []*Driver{w.driver(""), w.driver("")}
	for round := range 5 {
		name := fmt.Sprintf("race%d", round)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, h := range hosts {
			wg.Go(func() {
				errs[i] = h.Create(ctx, &volume.CreateRequest{Name: name, Opts: map[string]string{"bucket": w.bucket, "uid": fmt.Sprint(i)}})
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			} else if plugin.StatusOf(err) != 409 {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d creates succeeded (%v)", round, won, errs)
		}
	}
}

func TestAWSEnvironmentFallback(t *testing.T) {
	w := newWorld(t)
	t.Setenv("AWS_ENDPOINT_URL_S3", w.srv.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	t.Setenv("AWS_REGION", s3test.Region)
	w.config = w.writeConfig("allow-buckets: [" + w.bucket + "]\n")
	d := w.driver("")
	if err := d.Create(ctx, &volume.CreateRequest{Name: "env", Opts: map[string]string{"bucket": w.bucket}}); err != nil {
		t.Fatal(err)
	}
	other := w.driver("")
	g, err := other.Get(ctx, &volume.GetRequest{Name: "env"})
	if err != nil || g.Volume.Status["profile"] != AWSProfile {
		t.Fatalf("Get through the fallback: %+v, %v", g, err)
	}
	// Every place answered: a missing volume is "not found" (G2).
	if _, err := other.Get(ctx, &volume.GetRequest{Name: "nope"}); plugin.StatusOf(err) != 404 {
		t.Fatalf("Get of a missing volume: %v", err)
	}
}

func TestGetAnswersFromCacheWhenS3IsDown(t *testing.T) {
	w := newWorld(t)
	d := w.driver("")
	if err := d.Create(ctx, &volume.CreateRequest{Name: "vv", Opts: map[string]string{"bucket": w.bucket}}); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	// S3 unreachable is not "no such volume" (G2): the daemon would purge it.
	g, err := d.Get(ctx, &volume.GetRequest{Name: "vv"})
	if err != nil || g.Volume.Name != "vv" {
		t.Fatalf("Get with S3 down: %+v, %v", g, err)
	}
}

func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip(err)
	}
}

// mountVol mounts name through d and registers its unmount.
func mountVol(t *testing.T, d *Driver, name, id string) string {
	t.Helper()
	r, err := d.Mount(ctx, &volume.MountRequest{Name: name, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return r.Mountpoint
}

func pidOf(t *testing.T, d *Driver, name string) int {
	t.Helper()
	g, err := d.Get(ctx, &volume.GetRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := g.Volume.Status["mountPid"].(int)
	return pid
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMountProcessWritesReadoptsAndRemounts(t *testing.T) {
	needFUSE(t)
	w := newWorld(t)
	state := t.TempDir()
	d := w.driver(state)
	if err := d.Create(ctx, &volume.CreateRequest{Name: "mm", Opts: map[string]string{"bucket": w.bucket, "close": "async"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever happened: no mount and no process left.
		mp := filepath.Join(state, "mounts", "mm")
		if live, _ := mounts.MountPoints(); live[mp] {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	})
	mp := mountVol(t, d, "mm", "id1")
	if got := mountVol(t, d, "mm", "id2"); got != mp {
		t.Fatalf("second mount at %s, first at %s", got, mp)
	}
	if err := os.WriteFile(filepath.Join(mp, "a"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := pidOf(t, d, "mm")
	if pid == 0 {
		t.Fatal("no mount process reported")
	}
	// Remove refuses while mounted here.
	if err := d.Remove(ctx, &volume.RemoveRequest{Name: "mm"}); plugin.StatusOf(err) != 409 {
		t.Fatalf("remove while mounted: %v", err)
	}

	// The plugin goes away (Close is what a restart looks like to the
	// mount: nothing is unmounted); a new driver re-adopts the process.
	d.Close()
	d2 := w.driver(state)
	if got := pidOf(t, d2, "mm"); got != pid {
		t.Fatalf("after restart: mount process %d, want the re-adopted %d", got, pid)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "a")); err != nil || string(b) != "one" {
		t.Fatalf("read after restart: %q, %v", b, err)
	}

	// kill -9 of the mount process: detected and remounted, and reported.
	// What a killed process left staged and journaled (here planted, as a
	// process killed during an upload leaves it) is uploaded by the next.
	cache := filepath.Join(state, "cache", "mm")
	os.WriteFile(filepath.Join(cache, "planted.data"), []byte("staged before the kill"), 0o600)
	os.WriteFile(filepath.Join(cache, "planted.key"), []byte("mm/staged"), 0o600)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new mount process", func() bool {
		p := pidOf(t, d2, "mm")
		return p != 0 && p != pid
	})
	g, _ := d2.Get(ctx, &volume.GetRequest{Name: "mm"})
	if g.Volume.Status["remounts"] != 1 || !strings.Contains(fmt.Sprint(g.Volume.Status["lastDeath"]), "died") {
		t.Fatalf("status after the death: %v", g.Volume.Status)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "a")); err != nil || string(b) != "one" {
		t.Fatalf("read after remount: %q, %v", b, err)
	}
	if got := w.get("mm/staged"); got != "staged before the kill" {
		t.Fatalf("staged data after the remount: %q", got)
	}
	// Writes after the remount, with async close: the last Unmount waits
	// for the uploads.
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(mp, fmt.Sprintf("f%d", i)), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"id1", "id2"} {
		if err := d2.Unmount(ctx, &volume.UnmountRequest{Name: "mm", ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if live, _ := mounts.MountPoints(); live[mp] {
		t.Fatal("still mounted after the last unmount")
	}
	for i := range 20 {
		if got := w.get(fmt.Sprintf("mm/f%d", i)); got != fmt.Sprint(i) {
			t.Fatalf("f%d in S3 after unmount: %q", i, got)
		}
	}
	if pidOf(t, d2, "mm") != 0 {
		t.Fatal("a mount process is still reported after the unmount")
	}
	if err := d2.Remove(ctx, &volume.RemoveRequest{Name: "mm"}); err != nil {
		t.Fatal(err)
	}
}

// A mount process that dies while the plugin is down: the next plugin
// finds its mount dead, detaches it, mounts again (the volume is still
// referenced) and says so in Get's Status.
func TestMountProcessDeadAtPluginStart(t *testing.T) {
	needFUSE(t)
	w := newWorld(t)
	state := t.TempDir()
	d := w.driver(state)
	if err := d.Create(ctx, &volume.CreateRequest{Name: "dd", Opts: map[string]string{"bucket": w.bucket}}); err != nil {
		t.Fatal(err)
	}
	mp := mountVol(t, d, "dd", "id1")
	t.Cleanup(func() {
		if live, _ := mounts.MountPoints(); live[mp] {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	})
	if err := os.WriteFile(filepath.Join(mp, "f"), []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := pidOf(t, d, "dd")
	d.Close()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mount to die", func() bool {
		var st syscall.Stat_t
		return errors.Is(syscall.Stat(mp, &st), syscall.ENOTCONN)
	})
	d2 := w.driver(state)
	g, err := d2.Get(ctx, &volume.GetRequest{Name: "dd"})
	if err != nil {
		t.Fatal(err)
	}
	st := g.Volume.Status
	if st["remounts"] != 1 || !strings.Contains(fmt.Sprint(st["lastDeath"]), "found dead at plugin start") || st["mountPid"] == nil || st["mountPid"] == pid {
		t.Fatalf("status: %v", st)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "f")); err != nil || string(b) != "before" {
		t.Fatalf("read after the remount: %q, %v", b, err)
	}
	if err := d2.Unmount(ctx, &volume.UnmountRequest{Name: "dd", ID: "id1"}); err != nil {
		t.Fatal(err)
	}
	if live, _ := mounts.MountPoints(); live[mp] {
		t.Fatal("still mounted")
	}
}
