package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/internal/dockertest"
)

// TestAuthzDaemon runs dockplug-authz in the authorization chain of a
// private dockerd (G14): dangerous commands through the real CLI are
// refused with the plugin's message, ordinary ones work, the plugin cannot
// be switched off through the API, a dead plugin makes the daemon refuse
// everything (fail closed), and policy edits are picked up while a broken
// edit keeps the last good policy.
func TestAuthzDaemon(t *testing.T) {
	need(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	writePolicy(t, pol, "presets: [baseline]\ndefault: allow\n")
	p := newPlug(t, "dpa", "dockplug-authz", []string{authz.Implements}, []string{"--authz-policy", pol, "--authz-audit", filepath.Join(dir, "audit.log")})
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
		os.RemoveAll(p.Root)
	})
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	// Registered after the plugin's cleanup, so the daemon (whose teardown
	// goes through the chain) stops first.
	d := dockertest.Start(t, dockertest.WithEngine(engine()), dockertest.WithFlags("--authorization-plugin="+p.Name))
	img := d.Image(t)

	docker := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return d.Docker(ctx, args...)
	}
	denied := "authorization denied by plugin " + p.Name + ": "

	if out, err := docker("run", "--rm", img, "echo", "ok"); err != nil || out != "ok\n" {
		t.Fatalf("ordinary docker run: %q %v", out, err)
	}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"run", "--rm", "--privileged", img, "true"}, "privileged containers are not allowed"},
		{[]string{"run", "--rm", "-v", "/etc:/host-etc", img, "true"}, "binding host paths outside allow-bind"},
		{[]string{"run", "--rm", "--mount", "type=bind,src=/,dst=/h", img, "true"}, "binding host paths outside allow-bind"},
		{[]string{"run", "--rm", "--cap-add", "sys_admin", img, "true"}, "capabilities beyond Docker's default set"},
		{[]string{"run", "--rm", "--pid", "host", img, "true"}, "host namespaces"},
		{[]string{"run", "--rm", "--network", "host", img, "true"}, "host namespaces"},
		{[]string{"run", "--rm", "--security-opt", "seccomp=unconfined", img, "true"}, "disable confinement"},
		{[]string{"run", "--rm", "--device", "/dev/fuse", img, "true"}, "devices"},
		{[]string{"volume", "create", "-d", "local", "-o", "type=none", "-o", "o=bind", "-o", "device=/etc", "dpa-bind"}, "local volumes that bind host paths"},
		{[]string{"plugin", "disable", p.Name}, "changes to plugins are not allowed"},
		{[]string{"plugin", "rm", "-f", p.Name}, "changes to plugins are not allowed"},
	} {
		out, err := docker(c.args...)
		if err == nil || !strings.Contains(err.Error(), denied) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("docker %s: %q, %v; want %q...%q", strings.Join(c.args, " "), out, err, denied, c.msg)
		}
	}
	// A privileged exec into an allowed container.
	ctr, err := docker("run", "-d", img, "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	ctr = strings.TrimSpace(ctr)
	if _, err := docker("exec", "--privileged", ctr, "true"); err == nil || !strings.Contains(err.Error(), "privileged exec is not allowed") {
		t.Errorf("docker exec --privileged: %v", err)
	}
	if out, err := docker("exec", ctr, "echo", "in"); err != nil || out != "in\n" {
		t.Errorf("docker exec: %q %v", out, err)
	}

	// Fail closed: with the plugin dead every request is refused, and
	// allowed again once it is back.
	p.kill9(t)
	if _, err := docker("ps"); err == nil || !strings.Contains(err.Error(), "plugin "+p.Name+" failed with error") {
		t.Errorf("docker ps with the plugin dead: %v, want the daemon's plugin failure", err)
	}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := docker("ps"); err != nil {
		t.Errorf("docker ps with the plugin back: %v", err)
	}

	// A policy edit is picked up while the daemon runs.
	writePolicy(t, pol, `presets: [baseline]
default: allow
rules:
  - name: no-new-volumes
    deny: 'request.action == "volume.create"'
    message: "no new volumes today"
`)
	volDenied := func() bool {
		_, err := docker("volume", "create", "dpa-vol")
		if err == nil {
			docker("volume", "rm", "dpa-vol")
		}
		return err != nil && strings.Contains(err.Error(), "no new volumes today")
	}
	if !waitFor(30*time.Second, volDenied) {
		t.Fatal("the edited policy was not picked up within 30 s")
	}
	// A broken edit keeps the last good policy.
	writePolicy(t, pol, "presets: [baseline]\ndefault: allow\nrules:\n  - name: broken\n    deny: 'request.action ==='\n")
	time.Sleep(2 * time.Second) // let a reload, if any, happen
	if !volDenied() {
		t.Error("after a broken edit the last good policy is gone")
	}
	if _, err := docker("ps"); err != nil {
		t.Errorf("docker ps after a broken edit: %v", err)
	}
	if !strings.Contains(p.out.String(), "broken") {
		t.Errorf("the broken edit was not logged:\n%s", tail(p.out.String(), 20))
	}
	if _, err := docker("rm", "-f", ctr); err != nil {
		t.Error(err)
	}
}

// writePolicy replaces the policy file in one rename, as an editor or a
// config manager would.
func writePolicy(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
