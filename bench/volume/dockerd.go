package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemon is a private dockerd: its own data root, exec root (with its own
// managed containerd), API socket and config file, all under one temp dir,
// and no default bridge (containers run with --network none), so nothing of
// the host's docker, network or firewall is touched. Volume plugins are the
// exception: dockerd always discovers them in /run/docker/plugins.
type daemon struct {
	dir    string
	sock   string
	docker string // the docker CLI
	api    *http.Client
	cmd    *exec.Cmd
	done   chan struct{}
}

func startDaemon(ctx context.Context) (*daemon, error) {
	dockerd, err := tool("dockerd")
	if err != nil {
		return nil, err
	}
	cli := "/usr/bin/docker" // docker.io's CLI matches its daemon
	if _, err := os.Stat(cli); err != nil {
		if cli, err = tool("docker"); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("/tmp", "dpvb-d")
	if err != nil {
		return nil, err
	}
	d := &daemon{dir: dir, sock: filepath.Join(dir, "docker.sock"), docker: cli}
	d.api = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.sock)
		},
	}}
	// Our own config file keeps /etc/docker/daemon.json out.
	conf, _ := json.Marshal(map[string]any{"deprecated-key-path": filepath.Join(dir, "key.json")})
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), conf, 0o600); err != nil {
		d.stop()
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		d.stop()
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(dockerd,
		"--config-file="+filepath.Join(dir, "daemon.json"),
		"--data-root="+filepath.Join(dir, "root"),
		"--exec-root="+filepath.Join(dir, "exec"),
		"--pidfile="+filepath.Join(dir, "docker.pid"),
		"--host=unix://"+d.sock,
		"--storage-driver="+storageDriver(),
		"--bridge=none",
		"--iptables=false", "--ip-masq=false", "--ip-forward=false", "--userland-proxy=false",
		"--log-level=warn",
	)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group (a ^C reaches only us, and we stop it in order);
	// SIGTERM if we die. Pdeathsig is per thread: keep it locked.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	started := make(chan error, 1)
	d.done = make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(d.done)
	}()
	if err := <-started; err != nil {
		d.stop()
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	d.cmd = cmd
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := d.ping(ctx); err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			err := fmt.Errorf("dockerd exited at start; log:\n%s", d.logTail())
			d.stop()
			return nil, err
		case <-ctx.Done():
			d.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			err := fmt.Errorf("dockerd did not answer within 60s; log:\n%s", d.logTail())
			d.stop()
			return nil, err
		}
	}
}

func (d *daemon) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := d.call(ctx, http.MethodGet, "/_ping", nil, http.StatusOK)
	return err
}

// call sends one Engine API request and checks the status.
func (d *daemon) call(ctx context.Context, method, path string, body any, want int) ([]byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://docker"+path, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.api.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return out, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(out))
	}
	return out, nil
}

// cli runs the docker CLI against this daemon.
func (d *daemon) cli(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.docker, args...)
	cmd.Env = append(cleanEnv(), "DOCKER_HOST=unix://"+d.sock, "DOCKER_CONFIG="+filepath.Join(d.dir, "cli"))
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// stop removes all containers, stops dockerd (SIGTERM, then SIGKILL after
// 20 s), kills whatever of its containerd and shims is left, unmounts
// everything under its dir and removes the dir.
func (d *daemon) stop() error {
	var errs []error
	if d.cmd != nil {
		select {
		case <-d.done:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if out, err := d.cli(ctx, nil, "ps", "-aq"); err == nil {
				if ids := strings.Fields(out); len(ids) > 0 {
					d.cli(ctx, nil, append([]string{"rm", "-f"}, ids...)...)
				}
			}
			cancel()
			d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(20 * time.Second):
				d.cmd.Process.Kill()
				<-d.done
				errs = append(errs, errors.New("dockerd ignored SIGTERM for 20s and was killed"))
			}
		}
		d.api.CloseIdleConnections()
	}
	if err := killUnder(d.dir); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(d.dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killUnder SIGKILLs the containerd processes (daemon and shims) whose
// command line names dir: dockerd started them and normally stops them.
func killUnder(dir string) error {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd") {
			continue
		}
		for _, a := range args[1:] {
			if a == dir || strings.Contains(a, dir+"/") {
				pids = append(pids, pid)
				break
			}
		}
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d survived SIGKILL", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		p := unescapeOctal(f[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	// Deeper paths first; the later of equal mounts first.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	sortByDepth(out)
	return out, nil
}

func sortByDepth(ps []string) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && strings.Count(ps[j], "/") > strings.Count(ps[j-1], "/"); j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unmountUnder(dir string) error {
	for range 10 {
		ms, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			return nil
		}
		for _, m := range ms {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	return fmt.Errorf("mounts left under %s", dir)
}

// storageDriver is overlay2 when an overlay mount works in /tmp (it does
// not when /tmp is itself overlay, as in some containers), else vfs.
func storageDriver() string {
	dir, err := os.MkdirTemp("/tmp", "dpvb-p")
	if err != nil {
		return "vfs"
	}
	defer os.RemoveAll(dir)
	for _, s := range []string{"lower", "upper", "work", "merged"} {
		os.Mkdir(filepath.Join(dir, s), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "lower", "f"), []byte("x"), 0o644)
	merged := filepath.Join(dir, "merged")
	opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", dir, dir, dir)
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return "vfs"
	}
	werr := os.WriteFile(filepath.Join(merged, "f"), []byte("y"), 0o644)
	uerr := syscall.Unmount(merged, syscall.MNT_DETACH)
	if werr != nil || uerr != nil {
		return "vfs"
	}
	return "overlay2"
}

// buildImage imports a scratch image holding the host's static busybox
// (no registry needed).
func (d *daemon) buildImage(ctx context.Context, name string) error {
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox (install busybox-static): %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var werr error
	add := func(h *tar.Header, body []byte) {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			werr = errors.Join(werr, err)
		}
		if _, err := tw.Write(body); err != nil {
			werr = errors.Join(werr, err)
		}
	}
	for _, dir := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "d"} {
		add(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755}, nil)
	}
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bin))}, bin)
	for _, a := range []string{"sh", "true", "cat", "ls"} {
		add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}, nil)
	}
	if err := errors.Join(werr, tw.Close()); err != nil {
		return fmt.Errorf("image tar: %w", err)
	}
	_, err = d.cli(ctx, &buf, "import", "--change", `CMD ["/bin/sh"]`, "-", name)
	return err
}

func tool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name), nil
		}
	}
	return "", fmt.Errorf("%s not found (install docker.io)", name)
}

// cleanEnv drops DOCKER_* variables that could point the CLI or dockerd
// elsewhere.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") && !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			env = append(env, kv)
		}
	}
	return env
}
