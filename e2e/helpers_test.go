package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/mounts"
)

func socketPath(name string) string {
	return filepath.Join(plugin.DefaultSocketDir, name+".sock")
}

// syncBuffer collects a plugin's output across its runs.
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

// plug is one dockplug-volume plugin process, served under a unique name
// on /run/docker/plugins/NAME.sock (the daemon's fixed socket dir), with
// its own state dir. It can be stopped, killed and started again under the
// same name and state.
type plug struct {
	Kind  string   // the catalogue plugin served under Name; "" is dockplug-volume
	Impl  []string // what its handshake must list; nil is VolumeDriver
	Name  string
	Root  string // --state-dir
	State string // Root/Name: the driver's state.db, volumes/, mounts/
	Sock  string
	args  []string // extra serve flags
	env   []string // extra environment of the next start, e.g. a test fault point
	out   *syncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has been waited for
	werr error
}

func (p *plug) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *plug) everStarted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done != nil
}

func (p *plug) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// start runs the plugin and waits until it answers Plugin.Activate on its
// socket. After a kill -9 the socket is stale: the plugin replaces it.
func (p *plug) start() error {
	if p.running() {
		return errors.New("plugin already running")
	}
	kind, impl := p.Kind, p.Impl
	if kind == "" {
		kind, impl = "dockplug-volume", []string{volume.Kind}
	}
	args := append([]string{"serve", kind + "=" + p.Name, "--state-dir", p.Root, "--log-level", "debug"}, p.args...)
	cmd := exec.Command(binary, args...)
	if len(p.env) > 0 {
		cmd.Env = append(os.Environ(), p.env...)
	}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, // a terminal ^C reaches only the test binary
		// If the test binary dies, the plugin gets SIGTERM and removes its
		// socket: a dead socket would stall the daemon (G3).
		Pdeathsig: syscall.SIGTERM,
	}
	done := make(chan struct{})
	startErr := make(chan error, 1)
	// Pdeathsig fires when the thread that forked the child exits: keep it
	// locked until the process is waited for.
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			startErr <- err
			return
		}
		startErr <- nil
		err := cmd.Wait()
		p.mu.Lock()
		p.werr = err
		p.mu.Unlock()
		close(done)
	}()
	if err := <-startErr; err != nil {
		return fmt.Errorf("start plugin %s: %w", p.Name, err)
	}
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	startedMu.Lock()
	started = append(started, p.Name)
	startedMu.Unlock()

	c := p.client().Plugin()
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		m, err := c.Activate(ctx)
		cancel()
		if err == nil {
			for _, k := range impl {
				if !m.Has(k) {
					return fmt.Errorf("plugin %s implements %v, not %s", p.Name, m.Implements, k)
				}
			}
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("plugin %s exited before answering: %v\n%s", p.Name, p.werr, p.out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("plugin %s did not answer within 30s: %v", p.Name, err)
		}
	}
}

// stop sends SIGTERM to the plugin's PID and waits; the plugin must exit
// cleanly and remove its socket (G3).
func (p *plug) stop() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
	default:
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("plugin %s (pid %d) ignored SIGTERM for 20s and was killed", p.Name, cmd.Process.Pid)
		}
		p.mu.Lock()
		err := p.werr
		p.mu.Unlock()
		if err != nil {
			return fmt.Errorf("plugin %s exited with %v after SIGTERM", p.Name, err)
		}
	}
	if _, err := os.Lstat(p.Sock); err == nil {
		return fmt.Errorf("plugin %s left its socket %s after SIGTERM (G3)", p.Name, p.Sock)
	}
	return nil
}

// kill9 kills the plugin with SIGKILL and waits for it: no cleanup runs,
// the socket stays (stale) and mounts stay.
func (p *plug) kill9(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 plugin: %v", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("plugin %s survived SIGKILL", p.Name)
	}
}

// waitOutput waits until the plugin has written a line containing s, after
// the first from bytes of its output.
func (p *plug) waitOutput(t *testing.T, from int, s string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(p.out.String()[from:], s) {
		if !p.running() {
			t.Fatalf("plugin %s exited before writing %q:\n%s", p.Name, s, tail(p.out.String(), 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin %s did not write %q within 3 minutes", p.Name, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client talks to the plugin directly, as the daemon does, without the
// daemon's retries (a dead plugin fails at once).
func (p *plug) client() *volume.Client {
	c, err := plugin.NewClient("unix://"+p.Sock, plugin.WithBackoff(plugin.Backoff{}))
	if err != nil {
		panic(err)
	}
	return volume.NewClient(c)
}

// newPlug prepares (but does not start) a plugin named prefix-<random>
// with its own state dir under /tmp/prefix*. kind "" is dockplug-volume.
func newPlug(t *testing.T, prefix, kind string, impl, serveArgs []string) *plug {
	t.Helper()
	name := prefix + "-" + randHex(4)
	root, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	return &plug{Kind: kind, Impl: impl, Name: name, Root: root, State: filepath.Join(root, name),
		Sock: socketPath(name), args: serveArgs, out: &syncBuffer{}}
}

// removeContainers brings a killed plugin back (the daemon's cleanup calls
// need it) and removes the test's labelled containers with rm -f and the
// extra flags.
func removeContainers(ctx context.Context, t *testing.T, p *plug, label string, rmFlags ...string) {
	if !p.running() && p.everStarted() {
		if err := p.start(); err != nil {
			t.Errorf("teardown: restart plugin: %v", err)
		}
	}
	if out, err := daemon.Docker(ctx, "ps", "-aq", "--filter", "label="+label); err != nil {
		t.Errorf("teardown: %v", err)
	} else if ids := strings.Fields(out); len(ids) > 0 {
		args := append(append([]string{"rm", "-f"}, rmFlags...), ids...)
		if _, err := daemon.Docker(ctx, args...); err != nil {
			t.Errorf("teardown: %v", err)
		}
	}
}

// env is one test's plugin and what the test made in the daemon.
type env struct {
	t     *testing.T
	p     *plug
	label string // every container and volume the test makes carries it
}

// setup starts a plugin for t under a unique name (dpv-<random>) with its
// own state dir, and registers the teardown that removes the test's
// containers and volumes, stops the plugin and checks that no socket and
// no mount is left.
func setup(t *testing.T, serveArgs ...string) *env {
	t.Helper()
	need(t)
	p := newPlug(t, "dpv", "", nil, serveArgs)
	e := &env{t: t, p: p, label: "dockplug-e2e=" + p.Name}
	t.Cleanup(e.teardown)
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) teardown() {
	t := e.t
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Containers first: removing them makes the daemon send the last
	// Unmounts, which needs the plugin up.
	removeContainers(ctx, t, e.p, e.label, "-v")
	if e.p.running() {
		// Filtered by driver: an unfiltered ls asks every driver the daemon
		// ever saw, and dead ones stall it for 15 s (G3).
		vols := e.volumes()
		for _, v := range vols {
			if _, err := daemon.Docker(ctx, "volume", "rm", "-f", v); err != nil {
				t.Errorf("teardown: %v", err)
			}
		}
		if left := e.volumes(); len(left) > 0 {
			t.Errorf("teardown: volumes left in the daemon: %v", left)
		}
		if left := e.pluginVolumes(); len(left) > 0 {
			t.Errorf("teardown: volumes left in the plugin: %v", left)
		}
	}
	if err := e.p.stop(); err != nil {
		t.Errorf("teardown: %v", err)
	}
	// Only now, with the test finishing and the plugin gone, may a stale
	// socket of ours be removed.
	if _, err := os.Lstat(e.p.Sock); err == nil {
		os.Remove(e.p.Sock)
	}
	if ms := mountsUnder(t, e.p.Root); len(ms) > 0 {
		t.Errorf("teardown: mounts left under the plugin's state dir: %v", ms)
		for _, m := range ms {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(e.p.Root); err != nil {
		t.Errorf("teardown: %v", err)
	}
	if t.Failed() {
		t.Logf("plugin %s output (tail):\n%s", e.p.Name, tail(e.p.out.String(), 60))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// vol returns a volume name unique to this test.
func (e *env) vol(suffix string) string { return e.p.Name + "-" + suffix }

// mountpoint is where the plugin mounts volume name.
func (e *env) mountpoint(name string) string { return filepath.Join(e.p.State, "mounts", name) }

// docker runs the CLI against the test daemon and fails the test on error.
func (e *env) docker(args ...string) string {
	e.t.Helper()
	out, err := e.dockerErr(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// slowCall is when a docker command is reported as slow: a sign that the
// daemon waited on a dead plugin (G3).
const slowCall = 10 * time.Second

// dockerErr runs the CLI and returns its error (which carries stderr).
func (e *env) dockerErr(args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := daemon.Docker(ctx, args...)
	if d := time.Since(start); d > slowCall {
		e.t.Logf("slow: docker %s took %v", strings.Join(args, " "), d.Round(time.Millisecond))
	}
	return out, err
}

// run is `docker run` with the test's label, so teardown finds the container.
func (e *env) run(args ...string) string {
	e.t.Helper()
	return e.docker(append([]string{"run", "--label", e.label}, args...)...)
}

// create is `docker volume create -d <plugin>` with the test's label.
func (e *env) create(name string, opts ...string) {
	e.t.Helper()
	args := []string{"volume", "create", "-d", e.p.Name, "--label", e.label}
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	if out := strings.TrimSpace(e.docker(append(args, name)...)); out != name {
		e.t.Fatalf("volume create printed %q, want %q", out, name)
	}
}

// volumes lists the daemon's volumes of this plugin, sorted.
func (e *env) volumes() []string {
	e.t.Helper()
	out, err := e.dockerErr("volume", "ls", "-q", "--filter", "driver="+e.p.Name)
	if err != nil {
		e.t.Errorf("%v", err)
		return nil
	}
	vs := strings.Fields(out)
	sort.Strings(vs)
	return vs
}

// pluginVolumes lists the plugin's volumes through its own List.
func (e *env) pluginVolumes() []string {
	e.t.Helper()
	c := e.p.client()
	defer c.Plugin().Close()
	ls, err := c.List(context.Background())
	if err != nil {
		e.t.Errorf("plugin List: %v", err)
		return nil
	}
	var vs []string
	for _, v := range ls.Volumes {
		vs = append(vs, v.Name)
	}
	sort.Strings(vs)
	return vs
}

// refs is the number of mount references the plugin holds on name (its
// Get's Status.mounts).
func (e *env) refs(name string) int {
	e.t.Helper()
	c := e.p.client()
	defer c.Plugin().Close()
	g, err := c.Get(context.Background(), &volume.GetRequest{Name: name})
	if err != nil {
		e.t.Fatalf("plugin Get %s: %v", name, err)
	}
	n, ok := g.Volume.Status["mounts"].(float64)
	if !ok {
		e.t.Fatalf("plugin Get %s: Status.mounts is %#v", name, g.Volume.Status["mounts"])
	}
	return int(n)
}

// waitRefs waits until the plugin holds want references on name: the
// daemon sends Unmount while it handles the container's exit, which can be
// just after `docker stop` returns.
func (e *env) waitRefs(name string, want int) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := e.refs(name)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("volume %s: plugin holds %d mount reference(s), want %d", name, n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mounted reports whether path is a mount point in this (the plugin's and
// dockerd's) mount namespace.
func mounted(t *testing.T, path string) bool {
	t.Helper()
	live, err := mounts.MountPoints()
	if err != nil {
		t.Fatal(err)
	}
	return live[path]
}

func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	live, err := mounts.MountPoints()
	if err != nil {
		t.Error(err)
		return nil
	}
	var out []string
	for mp := range live {
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Strings(out)
	return out
}

// volumeInfo is `docker volume inspect` output.
type volumeInfo struct {
	Name       string
	Driver     string
	Mountpoint string
	CreatedAt  string
	Scope      string
	Labels     map[string]string
	Options    map[string]string
	Status     map[string]any
}

func (e *env) inspect(name string) volumeInfo {
	e.t.Helper()
	out := e.docker("volume", "inspect", name)
	var vs []volumeInfo
	if err := json.Unmarshal([]byte(out), &vs); err != nil || len(vs) != 1 {
		e.t.Fatalf("volume inspect %s: %v: %s", name, err, out)
	}
	return vs[0]
}

// statusOptions is Status.options of a volume as the plugin reports it.
func statusOptions(t *testing.T, v volumeInfo) map[string]string {
	t.Helper()
	raw, ok := v.Status["options"].(map[string]any)
	if !ok {
		t.Fatalf("volume %s: Status.options is %#v", v.Name, v.Status["options"])
	}
	out := map[string]string{}
	for k, val := range raw {
		s, ok := val.(string)
		if !ok {
			t.Fatalf("volume %s: Status.options[%s] is %#v", v.Name, k, val)
		}
		out[k] = s
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v != w {
			return false
		}
	}
	return true
}
