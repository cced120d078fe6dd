package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/driver"
	"github.com/dockplug/dockplug/network"
	"github.com/dockplug/dockplug/network/bridge"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/local"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dockplug-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "dockplug")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build dockplug: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "dp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// syncBuffer is written by the process's stderr copier and read by tests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running dockplug binary.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

func startBinary(t *testing.T, extra []*os.File, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	return startCmd(t, cmd, extra, env)
}

func startCmd(t *testing.T, cmd *exec.Cmd, extra []*os.File, env []string) *proc {
	t.Helper()
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	cmd.ExtraFiles = extra
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("dockplug exited with %v after SIGTERM:\n%s", err, p.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("dockplug did not stop on SIGTERM:\n%s", p.stderr)
	}
}

func waitActivate(t *testing.T, addr string) *plugin.Manifest {
	t.Helper()
	c, err := plugin.NewClient(addr, plugin.WithBackoff(plugin.Backoff{Base: 20 * time.Millisecond, Limit: 20 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.Activate(context.Background())
	if err != nil {
		t.Fatalf("activate %s: %v", addr, err)
	}
	return m
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the volume plugin bind-mounts: needs root")
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "dockplug ") {
		t.Fatalf("%q %v", out, err)
	}
}

func TestServeUnixSocketAndStopOnSIGTERM(t *testing.T) {
	requireRoot(t)
	sock, state := shortDir(t), shortDir(t)
	p := startBinary(t, nil, nil, "serve", "--socket-dir", sock, "--state-dir", state, "--metrics-addr", "127.0.0.1:0", "--log-level", "debug")
	path := filepath.Join(sock, "dockplug-volume.sock")
	m := waitActivate(t, "unix://"+path)
	if !m.Has("VolumeDriver") {
		t.Fatalf("implements %v", m.Implements)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket: %v %v", st, err)
	}
	body := scrapeMetrics(t, p)
	if !strings.Contains(string(body), `dockplug_plugin_calls_total{method="Plugin.Activate",plugin="dockplug-volume"} 1`) {
		t.Fatalf("metrics do not count the activation:\n%s", body)
	}
	p.stop(t)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after SIGTERM: %v", err)
	}
}

func TestServeRefusesASecondInstance(t *testing.T) {
	requireRoot(t)
	sock, state, state2 := shortDir(t), shortDir(t), shortDir(t)
	p := startBinary(t, nil, nil, "serve", "--socket-dir", sock, "--state-dir", state)
	waitActivate(t, "unix://"+filepath.Join(sock, "dockplug-volume.sock"))
	out, err := exec.Command(binary, "serve", "--socket-dir", sock, "--state-dir", state2).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is already running (socket") {
		t.Fatalf("second instance: %v\n%s", err, out)
	}
	// The first one is unharmed.
	waitActivate(t, "unix://"+filepath.Join(sock, "dockplug-volume.sock"))
	p.stop(t)
}

// go-plugins-helpers' socket activation was dead code (its PR #93): this
// starts the real binary with an inherited listener, as systemd does.
func TestSocketActivation(t *testing.T) {
	requireRoot(t)
	sock, state := shortDir(t), shortDir(t)
	path := filepath.Join(sock, "activated.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	// LISTEN_PID must be the server's own PID, known only after fork:
	// sh sets it and execs, keeping its PID.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, binary,
		"serve", "dockplug-volume=activated", "--socket-dir", filepath.Join(sock, "unused"), "--state-dir", state)
	p := startCmd(t, cmd, []*os.File{f}, []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=activated"})
	f.Close()
	m := waitActivate(t, "unix://"+path)
	if !m.Has("VolumeDriver") {
		t.Fatalf("implements %v", m.Implements)
	}
	if _, err := os.Stat(filepath.Join(sock, "unused", "activated.sock")); !os.IsNotExist(err) {
		t.Fatal("an activated plugin must not create its own socket")
	}
	p.stop(t)
}

func TestLsShowsLiveAndStalePluginsQuickly(t *testing.T) {
	requireRoot(t)
	sock, spec, state := shortDir(t), shortDir(t), shortDir(t)
	p := startBinary(t, nil, nil, "serve", "--socket-dir", sock, "--state-dir", state)
	waitActivate(t, "unix://"+filepath.Join(sock, "dockplug-volume.sock"))
	// A stale socket (no listener) and a spec file for a dead TCP address.
	stale, _ := net.Listen("unix", filepath.Join(sock, "stale.sock"))
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	os.WriteFile(filepath.Join(spec, "gone.spec"), []byte("tcp://127.0.0.1:1\n"), 0o644)
	start := time.Now()
	out, err := exec.Command(binary, "ls", "--json", "--socket-dir", sock, "--spec-dir", spec, "--timeout", "1s").Output()
	if err != nil {
		t.Fatal(err)
	}
	var entries []lsEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := map[string]lsEntry{}
	for _, e := range entries {
		got[e.Name] = e
	}
	if e := got["dockplug-volume"]; e.Error != "" || strings.Join(e.Implements, ",") != "VolumeDriver" {
		t.Errorf("live plugin: %+v", e)
	}
	if e := got["stale"]; e.Error == "" {
		t.Errorf("stale socket shown as reachable: %+v", e)
	}
	if e := got["gone"]; e.Error == "" || e.Addr != "tcp://127.0.0.1:1" {
		t.Errorf("dead spec: %+v", e)
	}
	// Bounded by the per-plugin timeout, not the daemon's 15 s of retries.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("ls took %v", d)
	}
	text, _ := exec.Command(binary, "ls", "--socket-dir", sock, "--spec-dir", spec).Output()
	if !strings.Contains(string(text), "unreachable:") || !strings.Contains(string(text), "NAME") {
		t.Errorf("table:\n%s", text)
	}
	p.stop(t)
}

func TestServeRejectsBadInvocations(t *testing.T) {
	sock, state := shortDir(t), shortDir(t)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"serve", "nope"}, `unknown plugin "nope"`},
		{[]string{"serve", "dockplug-volume", "--tcp-addr", "127.0.0.1:0"}, "insecure"},
		{[]string{"serve", "--log-level", "loud"}, "--log-level"},
		{[]string{"serve", "--log-format", "xml"}, "--log-format"},
		{[]string{"serve", "--config", "/nonexistent.yaml"}, "config"},
	} {
		args := append(c.args, "--socket-dir", sock, "--state-dir", state)
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.msg) {
			t.Errorf("%v: %v %s, want %q", c.args, err, out, c.msg)
		}
	}
	entries, _ := os.ReadDir(sock)
	if len(entries) != 0 {
		t.Errorf("bad invocations left sockets: %v", entries)
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("state-dir: /from/file\nlog-level: warn\nvolume-allowed-path: [/a, /b]\n"), 0o644)
	newFS := func() (*pflag.FlagSet, *string, *string, *[]string) {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		s := fs.String("state-dir", "/default", "")
		l := fs.String("log-level", "info", "")
		a := fs.StringSlice("volume-allowed-path", nil, "")
		return fs, s, l, a
	}
	fs, s, l, a := newFS()
	t.Setenv("DOCKPLUG_LOG_LEVEL", "error")
	fs.Parse([]string{"--state-dir", "/from/flag"})
	if err := applyConfig(fs, cfg); err != nil {
		t.Fatal(err)
	}
	if *s != "/from/flag" || *l != "error" || strings.Join(*a, ",") != "/a,/b" {
		t.Fatalf("flag > env > file: state %s level %s allowed %v", *s, *l, *a)
	}
	os.WriteFile(cfg, []byte("sate-dir: typo\n"), 0o644)
	fs, _, _, _ = newFS()
	if err := applyConfig(fs, cfg); err == nil || !strings.Contains(err.Error(), `unknown setting "sate-dir"`) {
		t.Fatalf("typo in config: %v", err)
	}
}

func TestEnvironmentValuesAreNotSplit(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	arr := fs.StringArray("ipam-default-pool", nil, "")
	sl := fs.StringSlice("volume-allowed-path", nil, "")
	t.Setenv("DOCKPLUG_IPAM_DEFAULT_POOL", "base=10.0.0.0/8,size=24")
	t.Setenv("DOCKPLUG_VOLUME_ALLOWED_PATH", "/a,/b")
	if err := applyConfig(fs, ""); err != nil {
		t.Fatal(err)
	}
	if len(*arr) != 1 || (*arr)[0] != "base=10.0.0.0/8,size=24" || strings.Join(*sl, "|") != "/a|/b" {
		t.Fatalf("array %q, slice %q", *arr, *sl)
	}
}

// The help says what the binary does, and nothing it does not: no "check"
// without a check command, and every plugin serve knows by name.
func TestHelpSaysWhatIsTrue(t *testing.T) {
	out, err := exec.Command(binary, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	help := string(out)
	root := newRootCmd()
	has := func(name string) bool {
		for _, c := range root.Commands() {
			if c.Name() == name {
				return true
			}
		}
		return false
	}
	if !has("check") && strings.Contains(strings.ToLower(help), "check") {
		t.Errorf("help speaks of checking plugins, but there is no check command:\n%s", help)
	}
	for _, d := range catalogue {
		if !strings.Contains(help, d.Name) {
			t.Errorf("help does not name the plugin %s:\n%s", d.Name, help)
		}
	}
	for _, c := range []string{"serve", "ls", "ipam", "volume", "version"} {
		if !has(c) || !strings.Contains(help, "  "+c+" ") {
			t.Errorf("help does not list the %s command:\n%s", c, help)
		}
	}
}

// The daemon sees only what it uses: each public socket's Plugin.Activate
// lists only its driver kind, and the operator-only methods answer on the
// admin socket, <state-dir>/NAME/admin.sock, mode 0600, outside the socket
// dir (DESIGN: keep them off the plugin's public face).
func TestAdminMethodsOnlyOnTheAdminSocket(t *testing.T) {
	requireRoot(t)
	sock, state := shortDir(t), shortDir(t)
	p := startBinary(t, nil, nil, "serve", "--socket-dir", sock, "--state-dir", state)
	ctx := context.Background()
	for _, c := range []struct{ name, kind, adminKind, adminMethod string }{
		{"dockplug-volume", volume.Kind, local.AdminKind, local.MethodRefs},
		{"dockplug-ipam", ipam.Implements, driver.AdminKind, driver.MethodPools},
		{"dockplug-net", network.Implements, bridge.AdminKind, bridge.MethodList},
	} {
		m := waitActivate(t, "unix://"+filepath.Join(sock, c.name+".sock"))
		if strings.Join(m.Implements, ",") != c.kind {
			t.Errorf("%s: the public socket implements %v, want only %s", c.name, m.Implements, c.kind)
		}
		pub, _ := plugin.NewClient("unix://"+filepath.Join(sock, c.name+".sock"), plugin.WithBackoff(plugin.Backoff{}))
		var se *plugin.StatusError
		if err := pub.Call(ctx, c.adminMethod, struct{}{}, nil); !errors.As(err, &se) || se.Status != 404 {
			t.Errorf("%s: %s on the public socket: %v, want 404", c.name, c.adminMethod, err)
		}
		pub.Close()

		path := adminSocketPath(state, c.name)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s: no admin socket: %v", c.name, err)
		}
		if st.Mode()&fs.ModeSocket == 0 || st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
			t.Errorf("%s: admin socket %v uid %d, want a socket of mode 0600 owned by uid %d", c.name, st.Mode(), st.Sys().(*syscall.Stat_t).Uid, os.Geteuid())
		}
		am := waitActivate(t, "unix://"+path)
		if strings.Join(am.Implements, ",") != c.adminKind {
			t.Errorf("%s: the admin socket implements %v, want %s", c.name, am.Implements, c.adminKind)
		}
	}
	// The daemon's socket dir holds the public sockets and nothing else.
	entries, _ := os.ReadDir(sock)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "dockplug-ipam.sock,dockplug-net.sock,dockplug-volume.sock" {
		t.Errorf("socket dir holds %v", names)
	}
	// The admin commands find the admin socket from --state-dir.
	out, err := exec.Command(binary, "ipam", "ls", "--state-dir", state).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "POOL ID") {
		t.Errorf("ipam ls: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "volume", "refs", "nope", "--state-dir", state).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no such volume: nope") {
		t.Errorf("volume refs: %v\n%s", err, out)
	}
	p.stop(t)
	for _, name := range []string{"dockplug-volume", "dockplug-ipam", "dockplug-net"} {
		if _, err := os.Lstat(adminSocketPath(state, name)); !os.IsNotExist(err) {
			t.Errorf("%s: admin socket left after SIGTERM: %v", name, err)
		}
	}
	// With the plugin gone, the commands say where they looked.
	out, err = exec.Command(binary, "ipam", "ls", "--state-dir", state).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no admin socket "+adminSocketPath(state, "dockplug-ipam")) {
		t.Errorf("ipam ls of a stopped plugin: %v\n%s", err, out)
	}
}

func TestAdminSocketMustNotBeDiscoverable(t *testing.T) {
	for _, c := range []struct {
		path string
		want bool
	}{
		{"/var/lib/dockplug/dockplug-ipam/admin.sock", false},
		{"/run/docker/plugins/admin.sock", true},
		{"/run/docker/plugins/admin/admin.sock", true},
		{"/run/docker/plugins/dockplug-ipam/admin.sock", false},
		{"/srv/sock/admin.sock", true},
	} {
		if got := discoverable(c.path, "/srv/sock/", plugin.DefaultSocketDir); got != c.want {
			t.Errorf("discoverable(%s) = %v", c.path, got)
		}
	}
	// serve refuses a state dir whose admin socket the daemon would find.
	sock := shortDir(t)
	out, err := exec.Command(binary, "serve", "dockplug-ipam=admin", "--socket-dir", sock, "--state-dir", sock).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "would be found by the daemon") {
		t.Fatalf("admin socket in the socket dir: %v\n%s", err, out)
	}
}

// scrapeMetrics finds the --metrics-addr address in the plugin's log and
// returns what /metrics answers.
func scrapeMetrics(t *testing.T, p *proc) []byte {
	t.Helper()
	var addr string
	for range 200 {
		if i := strings.Index(p.stderr.String(), "addr=http://127.0.0.1:"); i >= 0 {
			addr = strings.Fields(p.stderr.String()[i+len("addr="):])[0]
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get(addr)
	if err != nil {
		t.Fatalf("metrics %q: %v\n%s", addr, err, p.stderr)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics %q: %v", addr, err)
	}
	return body
}
