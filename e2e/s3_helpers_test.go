package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dockplug/dockplug/internal/s3test"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/mounts"
)

// s3env is one dockplug-s3 plugin served to the test daemon, over its own
// versitygw and bucket.
type s3env struct {
	*env
	srv    *s3test.Server
	cli    *minio.Client
	bucket string
	config string
}

// s3Config writes a config file (mode 0600) allowing bucket, with a
// "default" profile and a "wrong" one whose secret is wrong.
func s3Config(t *testing.T, srv *s3test.Server, bucket string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "s3.yaml")
	body := fmt.Sprintf(`profiles:
  default:
    endpoint: %s
    region: %s
    access-key: %s
    secret-key: %s
  wrong:
    endpoint: %s
    access-key: %s
    secret-key: not-the-secret
allow-buckets: [%s]
`, srv.Endpoint, s3test.Region, s3test.AccessKey, s3test.SecretKey, srv.Endpoint, s3test.AccessKey, bucket)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// setupS3 starts versitygw, makes a bucket and serves dockplug-s3 for t.
// Teardown (in this order): the test's containers and volumes, the plugin,
// any mount process left (killed by the PID in its state dir), then the
// S3 server.
func setupS3(t *testing.T) *s3env {
	t.Helper()
	need(t)
	srv := s3test.Start(t)
	s := &s3env{srv: srv, cli: srv.Client(), bucket: srv.Bucket(t)}
	s.config = s3Config(t, srv, s.bucket)
	s.env = s.newPlugin(t, "dps3")
	return s
}

// newPlugin starts another dockplug-s3 instance (another "host": its own
// name and state dir) over the same config.
func (s *s3env) newPlugin(t *testing.T, prefix string) *env {
	t.Helper()
	p := newPlug(t, prefix, "dockplug-s3", []string{volume.Kind}, []string{"--s3-config", s.config})
	e := &env{t: t, p: p, label: "dockplug-e2e=" + p.Name}
	t.Cleanup(func() { killMountProcs(t, p) })
	t.Cleanup(e.teardown)
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	return e
}

// killMountProcs ends the mount processes a test left (by their PIDs,
// never by name) and detaches their mounts.
func killMountProcs(t *testing.T, p *plug) {
	pids, _ := filepath.Glob(filepath.Join(p.State, "procs", "*.pid"))
	for _, f := range pids {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		spec := strings.TrimSuffix(f, ".pid") + ".json"
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if pid > 0 && err == nil && strings.Contains(string(cmdline), spec) {
			t.Errorf("teardown: mount process %d (%s) still running: killed", pid, filepath.Base(f))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, m := range mountsUnder(t, p.Root) {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// otherHost starts a second dockplug-s3 (its own name and state dir, the
// same config and bucket), driven directly through its socket rather than
// through the daemon: dockerd binds each volume name to one driver.
func (s *s3env) otherHost(t *testing.T) *plug {
	t.Helper()
	p := newPlug(t, "dps3b", "dockplug-s3", []string{volume.Kind}, []string{"--s3-config", s.config})
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		killMountProcs(t, p)
		os.RemoveAll(p.Root)
	})
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// object reads key from the bucket ("" and false if absent).
func (s *s3env) object(key string) (string, bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	o, err := s.cli.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return "", false
	}
	if err != nil {
		s.t.Fatalf("get %s: %v", key, err)
	}
	return string(b), true
}

// createS3 is `docker volume create -d <plugin> -o bucket=<bucket> ...`.
func (s *s3env) createS3(e *env, name string, opts ...string) {
	e.t.Helper()
	e.create(name, append([]string{"bucket=" + s.bucket}, opts...)...)
}

// status is the plugin's Get Status of name, asked directly.
func (e *env) status(name string) map[string]any {
	e.t.Helper()
	c := e.p.client()
	defer c.Plugin().Close()
	g, err := c.Get(context.Background(), &volume.GetRequest{Name: name})
	if err != nil {
		e.t.Fatalf("plugin Get %s: %v", name, err)
	}
	return g.Volume.Status
}

// waitUntil polls cond (with a generous deadline, not a timing assertion).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fuseMounted(t *testing.T, path string) bool {
	t.Helper()
	live, err := mounts.MountPoints()
	if err != nil {
		t.Fatal(err)
	}
	return live[path]
}
