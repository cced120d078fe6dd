// Package dockertest runs private Docker daemons for end-to-end tests of the
// dockplug plugins.
//
// Every daemon gets its own short temp dir under /tmp (unix socket paths must
// stay below 108 bytes) holding its --data-root, --exec-root, pid file,
// socket, daemon.json and log. dockerd starts its own managed containerd below
// the exec-root, so nothing is shared with a host dockerd/containerd. Each
// daemon also gets its own Linux bridge ("dt" + 6 hex digits) with a random,
// unused 10.x.y.0/24 subnet, passed as --bridge: the default bridge network
// works inside containers while several daemons (and a host dockerd owning
// docker0) coexist. iptables, masquerading and ip_forward are left alone, so
// containers reach each other and the host over the bridge but nothing
// outside.
//
// What is NOT private: dockerd always discovers plugins through the real
// /run/docker/plugins (and /etc/docker/plugins, /usr/lib/docker/plugins), so
// a plugin under test that puts its socket or spec file there is seen by every
// daemon on the host. Tests using this harness must pick unique plugin names.
//
// Typical use in a test:
//
//	func TestVolume(t *testing.T) {
//		dockertest.Skip(t)
//		d := dockertest.Start(t)
//		out := d.Run(t, "--rm", d.Image(t), "echo", "hi")
//		...
//	}
//
// or one daemon for a whole package from TestMain:
//
//	func TestMain(m *testing.M) {
//		d, cleanup, err := dockertest.StartMain()
//		switch {
//		case err == nil:
//			daemon = d
//		case errors.Is(err, dockertest.ErrUnavailable) && !dockertest.Required():
//			// Tests call dockertest.Skip(t), which skips them with the reason.
//		default:
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		code := m.Run()
//		cleanup()
//		os.Exit(code)
//	}
//
// Teardown (t.Cleanup, the func from StartMain, or Close) removes all
// containers, stops dockerd, kills leftover containerd/shim/container
// processes of this daemon only, unmounts everything below its dir, deletes
// its bridge and removes the dir. A SIGINT/SIGTERM handler does the same for
// all live daemons before exiting, dockerd gets SIGTERM if the test process
// dies (Pdeathsig), and leftovers of test processes that died anyway (e.g. a
// -timeout panic) are reaped by the next Start.
//
// Set DOCKPLUG_E2E=require to turn every skip into a failure (CI), and
// DOCKPLUG_E2E_STORAGE_DRIVER to override the storage driver probe.
package dockertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// EnvE2E set to "require" makes Skip fail instead of skip.
	EnvE2E = "DOCKPLUG_E2E"
	// EnvStorageDriver overrides the storage driver chosen by probing.
	EnvStorageDriver = "DOCKPLUG_E2E_STORAGE_DRIVER"
	// ImageName is the tag of the busybox image built by Image.
	ImageName = "dockplug-busybox:test"
	// APIBaseURL is the base URL for requests sent through Client; the host
	// part is ignored because the client always dials the daemon's socket.
	APIBaseURL = "http://docker"

	pingTimeout   = 60 * time.Second
	stopTimeout   = 20 * time.Second
	dockerTimeout = 5 * time.Minute
)

// ErrUnavailable is wrapped by errors saying this host cannot run e2e tests
// at all (no dockerd, not root), as opposed to a daemon that failed to start.
var ErrUnavailable = errors.New("docker e2e environment unavailable")

type config struct {
	engine        Engine // "" is SelectedEngine()
	flags         []string
	storageDriver string
	logf          func(format string, args ...any)
}

// Option configures a daemon started by Start or StartMain.
type Option func(*config)

// WithFlags appends extra dockerd flags, e.g. "--authorization-plugin=x".
// A --storage-driver given here replaces the probed one.
func WithFlags(flags ...string) Option {
	return func(c *config) { c.flags = append(c.flags, flags...) }
}

// WithStorageDriver forces a storage driver instead of probing overlay2.
func WithStorageDriver(name string) Option {
	return func(c *config) { c.storageDriver = name }
}

// Daemon is a private dockerd. Its exported fields are read-only.
type Daemon struct {
	Host          string       // DOCKER_HOST value: unix://<Dir>/docker.sock
	Socket        string       // path of the API socket
	Dir           string       // per-daemon base dir; removed on Close
	Root          string       // --data-root
	ExecRoot      string       // --exec-root (managed containerd lives below it)
	LogFile       string       // dockerd + containerd output
	Bridge        string       // Linux bridge used as the default bridge network
	Subnet        netip.Prefix // subnet of Bridge
	Gateway       netip.Addr   // address of Bridge inside Subnet
	StorageDriver string       // storage driver passed to dockerd ("" if given via WithFlags)
	Engine        Engine       // which engine this is

	dockerd string
	path    string // dockerd's PATH: finds its containerd, runc, docker-proxy
	cli     string
	args    []string
	client  *http.Client

	mu   sync.Mutex // guards proc
	proc *proc

	imgMu    sync.Mutex
	imgBuilt bool

	closeOnce sync.Once
	closeErr  error
}

// Required reports whether DOCKPLUG_E2E=require is set, i.e. e2e tests must
// run and fail rather than skip.
func Required() bool { return os.Getenv(EnvE2E) == "require" }

// Available returns nil if this host can run a private dockerd, otherwise an
// error wrapping ErrUnavailable that says why.
func Available() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("%w: needs linux, have %s", ErrUnavailable, runtime.GOOS)
	}
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("%w: needs root (euid %d)", ErrUnavailable, uid)
	}
	for _, name := range []string{"docker", "ip"} {
		if _, err := lookTool(name); err != nil {
			return fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	e, err := SelectedEngine()
	if err != nil {
		return err
	}
	_, _, err = engineTools(e)
	return err
}

// Skip skips the calling test with a visible reason when Available fails or
// the test runs with -short; with DOCKPLUG_E2E=require it fails the test
// instead, so CI never skips silently.
func Skip(t testing.TB) {
	t.Helper()
	err := Available()
	if Required() {
		if err != nil {
			t.Fatalf("dockertest: %s=require but: %v", EnvE2E, err)
		}
		return
	}
	if err != nil {
		t.Skipf("dockertest: skipping e2e test: %v (set %s=require to make this fatal)", err, EnvE2E)
	}
	if testing.Short() {
		t.Skipf("dockertest: skipping e2e test in -short mode")
	}
}

// Start starts a private dockerd for the calling test and registers its
// teardown with t.Cleanup. It skips (or fails, see Skip) when the host cannot
// run dockerd and fails the test if the daemon does not come up.
func Start(t testing.TB, opts ...Option) *Daemon {
	t.Helper()
	Skip(t)
	cfg := config{logf: t.Logf}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := start(cfg)
	if err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("dockertest: teardown: %v", err)
		}
	})
	// Registered after Close, so it runs first, while the log still exists.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dockertest: tail of %s:\n%s", d.LogFile, d.LogTail(40))
		}
	})
	return d
}

// StartMain starts a private dockerd for use from TestMain. cleanup tears it
// down (it is safe to call more than once and reports failures on stderr);
// a SIGINT/SIGTERM handler also tears it down before exiting. The error wraps
// ErrUnavailable if the host cannot run dockerd at all.
func StartMain(opts ...Option) (*Daemon, func(), error) {
	cfg := config{logf: func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "dockertest: "+format+"\n", args...)
	}}
	for _, o := range opts {
		o(&cfg)
	}
	if err := Available(); err != nil {
		return nil, func() {}, err
	}
	d, err := start(cfg)
	if err != nil {
		return nil, func() {}, err
	}
	cleanup := func() {
		if err := d.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "dockertest: teardown: %v\n", err)
		}
	}
	return d, cleanup, nil
}

func start(cfg config) (_ *Daemon, retErr error) {
	engine := cfg.engine
	if engine == "" {
		var err error
		if engine, err = SelectedEngine(); err != nil {
			return nil, err
		}
	}
	dockerd, path, err := engineTools(engine)
	if err != nil {
		return nil, err
	}
	cli, err := lookTool("docker")
	if err != nil {
		return nil, err
	}
	reapStale(cfg.logf)

	driver := ""
	if !hasFlag(cfg.flags, "--storage-driver", "-s") {
		driver = cfg.storageDriver
		if driver == "" {
			driver = os.Getenv(EnvStorageDriver)
		}
		if driver == "" {
			driver = probeStorageDriver()
		}
	}

	dir, err := os.MkdirTemp("/tmp", "dt")
	if err != nil {
		return nil, fmt.Errorf("create daemon dir: %w", err)
	}
	d := &Daemon{
		Dir:           dir,
		Socket:        filepath.Join(dir, "docker.sock"),
		Root:          filepath.Join(dir, "root"),
		ExecRoot:      filepath.Join(dir, "exec"),
		LogFile:       filepath.Join(dir, "dockerd.log"),
		StorageDriver: driver,
		Engine:        engine,
		dockerd:       dockerd,
		path:          path,
		cli:           cli,
	}
	d.Host = "unix://" + d.Socket
	d.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.Socket)
		},
	}}
	// Registered before anything is created so that a failure below, or a
	// signal, still tears down whatever exists so far.
	register(d)
	defer func() {
		if retErr != nil {
			tail := d.LogTail(40)
			if err := d.Close(); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("teardown after failed start: %w", err))
			}
			if tail != "" {
				retErr = fmt.Errorf("%w\ndockerd log tail:\n%s", retErr, tail)
			}
		}
	}()

	d.Bridge, err = pickBridgeName()
	if err != nil {
		return d, err
	}
	// The owner file names the bridge before it exists, so a reaper can
	// always find it.
	if err := writeOwner(dir, d.Bridge); err != nil {
		return d, err
	}
	if d.Subnet, d.Gateway, err = createBridge(d.Bridge); err != nil {
		return d, err
	}
	// Our own daemon.json keeps the host's /etc/docker/daemon.json out, and
	// moves the trust key out of /etc/docker.
	conf, _ := json.Marshal(map[string]any{"deprecated-key-path": filepath.Join(dir, "key.json")})
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), conf, 0o600); err != nil {
		return d, fmt.Errorf("write daemon.json: %w", err)
	}

	d.args = []string{
		"--config-file=" + filepath.Join(dir, "daemon.json"),
		"--data-root=" + d.Root,
		"--exec-root=" + d.ExecRoot,
		"--pidfile=" + filepath.Join(dir, "docker.pid"),
		"--host=" + d.Host,
		"--bridge=" + d.Bridge,
		// Leave the host's firewall and sysctls alone; tests need only
		// bridge-local traffic.
		"--iptables=false",
		"--ip-masq=false",
		"--ip-forward=false",
		"--userland-proxy=false",
		"--log-level=warn",
	}
	if driver != "" {
		d.args = append(d.args, "--storage-driver="+driver)
	}
	d.args = append(d.args, cfg.flags...)

	if err := d.launch(); err != nil {
		return d, err
	}
	return d, nil
}

// launch starts dockerd with d.args and waits until /_ping answers.
func (d *Daemon) launch() error {
	logf, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open dockerd log: %w", err)
	}
	defer logf.Close() // dockerd has its own copy
	cmd := exec.Command(d.dockerd, d.args...)
	cmd.Env = d.daemonEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a terminal ^C reaches only the test binary,
		// whose handler removes containers before stopping dockerd.
		Setpgid: true,
		// If the test process dies without teardown, dockerd stops too.
		Pdeathsig: syscall.SIGTERM,
	}
	p, err := startProc(cmd)
	if err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	d.mu.Lock()
	d.proc = p
	d.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err := d.Ping(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("dockerd exited before answering /_ping: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("dockerd did not answer /_ping within %v: %w", pingTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Pid returns the pid of the running dockerd, or 0.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil || d.proc.exited() {
		return 0
	}
	return d.proc.cmd.Process.Pid
}

// Client returns an HTTP client that talks to the Engine API over the
// daemon's socket; use URLs like APIBaseURL+"/v1.41/containers/json".
func (d *Daemon) Client() *http.Client { return d.client }

// Ping calls GET /_ping and returns nil if the daemon answered OK.
func (d *Daemon) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, APIBaseURL+"/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// Docker runs the docker CLI against this daemon and returns its stdout
// unmodified. The error names the arguments and includes stderr.
func (d *Daemon) Docker(ctx context.Context, args ...string) (string, error) {
	return d.DockerInput(ctx, nil, args...)
}

// DockerInput is Docker with stdin connected to r.
func (d *Daemon) DockerInput(ctx context.Context, r io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.cli, args...)
	cmd.Env = append(filteredEnv(),
		"DOCKER_HOST="+d.Host,
		// Keep ~/.docker (contexts, credential helpers) out.
		"DOCKER_CONFIG="+filepath.Join(d.Dir, "cli"),
	)
	cmd.Stdin = r
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// MustDocker is Docker that fails the test on error.
func (d *Daemon) MustDocker(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	out, err := d.Docker(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Run runs `docker run args...` and returns its stdout; on error it fails
// the test with stderr.
func (d *Daemon) Run(t testing.TB, args ...string) string {
	t.Helper()
	return d.MustDocker(t, append([]string{"run"}, args...)...)
}

// Restart stops dockerd (SIGTERM, then SIGKILL after 20 s) and starts it again
// on the same roots and bridge. Without live-restore, dockerd stops running
// containers on shutdown; they stay listed in `docker ps -a`.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	if err := d.stop(); err != nil {
		t.Fatalf("dockertest: restart: %v", err)
	}
	if err := d.launch(); err != nil {
		t.Fatalf("dockertest: restart: %v\ndockerd log tail:\n%s", err, d.LogTail(40))
	}
}

// stop sends SIGTERM to dockerd and waits for it, escalating to SIGKILL.
func (d *Daemon) stop() error {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return fmt.Errorf("dockerd (pid %d) ignored SIGTERM for %v and was killed", p.cmd.Process.Pid, stopTimeout)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("dockerd (pid %d) survived SIGKILL", p.cmd.Process.Pid)
	}
}

// LogTail returns about the last n lines of the dockerd log.
func (d *Daemon) LogTail(n int) string {
	f, err := os.Open(d.LogFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxBytes = 16 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxBytes {
		_, _ = f.Seek(-maxBytes, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Close tears the daemon down completely; see the package doc. It is
// idempotent and safe for concurrent use.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.closeErr = d.teardown()
		unregister(d)
	})
	return d.closeErr
}

// lookTool finds a binary; the docker CLI from the docker.io package is
// preferred because it matches dockerd's API version. sbin dirs are tried
// too because PATH under `go test` may lack them.
func lookTool(name string) (string, error) {
	if name == "docker" {
		if _, err := os.Stat("/usr/bin/docker"); err == nil {
			return "/usr/bin/docker", nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or sbin dirs", name)
}

// daemonEnv is dockerd's environment: filteredEnv with the engine's PATH.
func (d *Daemon) daemonEnv() []string {
	var env []string
	for _, kv := range filteredEnv() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+d.path)
	if d.Engine == Engine29 {
		// Read by dockerd itself (not a DOCKER_* client variable that
		// filteredEnv drops on purpose).
		env = append(env, "DOCKER_MIN_API_VERSION="+minAPIVersion2010CLI)
	}
	return env
}

// filteredEnv is the process environment without DOCKER_* variables, which
// could point the CLI or dockerd elsewhere.
func filteredEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DOCKER_") || strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func hasFlag(flags []string, names ...string) bool {
	for _, f := range flags {
		for _, n := range names {
			if f == n || strings.HasPrefix(f, n+"=") {
				return true
			}
		}
	}
	return false
}
