package e2e

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/authz/identity"
	"github.com/dockplug/dockplug/internal/dockertest"
)

// proxyUID is the unprivileged user the docker CLI runs as; it needs no
// passwd entry.
const proxyUID = 4242

// TestAuthzProxyIdentity puts dockplug authz-proxy in front of a private
// dockerd whose authorization plugin has the proxy's identity key: the
// real docker CLI, run as uid 4242 against the proxy's socket, is judged
// by rules keyed on user.uid, through plain calls and hijacked ones (run
// attached, exec with and without stdin, start -a); root through the proxy
// is user.name "root", root on the daemon's own socket is anonymous, and a
// forged identity header sent there is denied.
func TestAuthzProxyIdentity(t *testing.T) {
	need(t)
	// Not t.TempDir: its parent is 0700, and uid 4242 must reach the
	// proxy's socket and its home.
	dir, err := os.MkdirTemp("/tmp", "dpp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "identity.key")
	pol := filepath.Join(dir, "policy.yaml")
	writePolicy(t, pol, `presets: [baseline]
default: allow
rules:
  - name: uid-4242-keeps-containers
    deny: 'user.uid == 4242 && request.action == "container.delete"'
    message: "uid 4242 may not remove containers"
  - name: root-by-name
    deny: 'user.name == "root" && user.authMethod == "peercred" && "root" in user.groups && request.action == "volume.create"'
    message: "root through the proxy may not create volumes"
`)
	audit := filepath.Join(dir, "audit.log")
	p := newPlug(t, "dpp", "dockplug-authz", []string{authz.Implements},
		[]string{"--authz-policy", pol, "--authz-audit", audit, "--authz-identity-key", key})
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
		os.RemoveAll(p.Root)
	})
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	d := dockertest.Start(t, dockertest.WithEngine(engine()), dockertest.WithFlags("--authorization-plugin="+p.Name))
	img := d.Image(t)

	sock := filepath.Join(dir, "authz.sock")
	stopProxy := startAuthzProxy(t, sock, d.Socket, key)
	t.Cleanup(stopProxy)

	cli := "/usr/bin/docker"
	if _, err := os.Stat(cli); err != nil {
		if cli, err = exec.LookPath("docker"); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, proxyUID, proxyUID); err != nil {
		t.Fatal(err)
	}
	// as runs the docker CLI against the proxy, as uid (and gid) uid.
	as := func(uid uint32, stdin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, cli, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
			"DOCKER_HOST=unix://" + sock}
		if uid != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		}
		cmd.Stdin = strings.NewReader(stdin)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		cmd.WaitDelay = 5 * time.Second
		err := cmd.Run()
		if err != nil {
			return out.String(), &cliError{args: args, err: err, stderr: stderr.String()}
		}
		return out.String(), nil
	}
	direct := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return d.Docker(ctx, args...)
	}
	denied := "authorization denied by plugin " + p.Name + ": "

	// Plain and hijacked calls as uid 4242 through the proxy.
	if out, err := as(proxyUID, "", "run", "--rm", img, "echo", "attached"); err != nil || out != "attached\n" {
		t.Fatalf("docker run (attach) as uid %d: %q %v\n%s", proxyUID, out, err, tail(p.out.String(), 20))
	}
	ctr, err := as(proxyUID, "", "run", "-d", img, "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	ctr = strings.TrimSpace(ctr)
	t.Cleanup(func() { direct("rm", "-f", ctr) })
	if out, err := as(proxyUID, "", "exec", ctr, "echo", "in-exec"); err != nil || out != "in-exec\n" {
		t.Errorf("docker exec through the proxy: %q %v", out, err)
	}
	if out, err := as(proxyUID, "line one\nline two\n", "exec", "-i", ctr, "cat"); err != nil || out != "line one\nline two\n" {
		t.Errorf("docker exec -i (stdin, half-close) through the proxy: %q %v", out, err)
	}
	created, err := as(proxyUID, "", "create", img, "echo", "started-attached")
	if err != nil {
		t.Fatal(err)
	}
	created = strings.TrimSpace(created)
	t.Cleanup(func() { direct("rm", "-f", created) })
	if out, err := as(proxyUID, "", "start", "-a", created); err != nil || out != "started-attached\n" {
		t.Errorf("docker start -a through the proxy: %q %v", out, err)
	}
	if out, err := as(proxyUID, "", "logs", ctr); err != nil || out != "" {
		t.Errorf("docker logs through the proxy: %q %v", out, err)
	}

	// The rule keyed on user.uid.
	if _, err := as(proxyUID, "", "rm", "-f", ctr); err == nil || !strings.Contains(err.Error(), denied+"uid 4242 may not remove containers") {
		t.Errorf("docker rm as uid %d through the proxy: %v, want the uid rule's deny", proxyUID, err)
	}
	// Root through the proxy is root by name; root on the daemon's socket
	// is anonymous.
	if _, err := as(0, "", "volume", "create", "dpp-vol"); err == nil || !strings.Contains(err.Error(), "root through the proxy may not create volumes") {
		t.Errorf("docker volume create as root through the proxy: %v, want the user.name rule's deny", err)
	}
	if _, err := direct("volume", "create", "dpp-vol"); err != nil {
		t.Errorf("docker volume create on the daemon's socket (anonymous): %v", err)
	}
	direct("volume", "rm", "dpp-vol")
	if _, err := direct("rm", "-f", ctr); err != nil {
		t.Errorf("docker rm on the daemon's socket (anonymous): %v", err)
	}

	// A forged header on the daemon's own socket is refused, not believed.
	req, _ := http.NewRequest("GET", "http://docker/info", nil)
	req.Header.Set(identity.Header, "v1;uid=0;gid=0;pid=1;t="+strconv.FormatInt(time.Now().Unix(), 10)+";n=00;mac=forged")
	resp, err := d.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "bad signature") {
		t.Errorf("forged identity header on the daemon's socket: %d %s", resp.StatusCode, body)
	}

	// The audit log names the uid.
	log, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte(`"uid":4242`)) || !bytes.Contains(log, []byte(`"user":"root","uid":0`)) {
		t.Errorf("audit log lacks the proxied uids:\n%s", tail(string(log), 10))
	}
}

type cliError struct {
	args   []string
	err    error
	stderr string
}

func (e *cliError) Error() string {
	return "docker " + strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + strings.TrimSpace(e.stderr)
}

// startAuthzProxy runs dockplug authz-proxy and waits until its socket
// answers; the returned func stops it (SIGTERM) and waits.
func startAuthzProxy(t *testing.T, sock, upstream, key string) func() {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(binary, "authz-proxy", "--listen", sock, "--upstream", upstream, "--identity-key", key)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if !waitFor(30*time.Second, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		cmd.Process.Kill()
		t.Fatalf("authz-proxy did not listen within 30 s:\n%s", out)
	}
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("authz-proxy: %v\n%s", err, out)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("authz-proxy did not stop on SIGTERM:\n%s", out)
		}
		if _, err := os.Stat(sock); err == nil {
			t.Error("authz-proxy left its socket behind")
		}
	}
}
