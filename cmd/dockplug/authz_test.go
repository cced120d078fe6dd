package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/plugin"
)

func authzClient(t *testing.T, sock string) *authz.Client {
	t.Helper()
	addr := "unix://" + filepath.Join(sock, "dockplug-authz.sock")
	waitActivate(t, addr)
	c, err := plugin.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return authz.NewClient(c)
}

var privileged = &authz.Request{RequestMethod: "POST", RequestURI: "/v1.51/containers/create",
	RequestHeaders: map[string]string{"Content-Type": "application/json"},
	RequestBody:    []byte(`{"Image":"a","HostConfig":{"Privileged":true}}`)}

var ping = &authz.Request{RequestMethod: "GET", RequestURI: "/_ping"}

// The plugin starts without a policy and denies everything, saying why
// (G14: dockerd cannot start without it); after the file is written and
// SIGHUP sent, it decides by the policy, and a broken edit keeps it.
func TestServeAuthzFailsClosedThenReloads(t *testing.T) {
	sock, state := shortDir(t), shortDir(t)
	pol := filepath.Join(shortDir(t), "policy.yaml")
	audit := filepath.Join(shortDir(t), "audit.log")
	p := startBinary(t, nil, nil, "serve", "dockplug-authz", "--socket-dir", sock, "--state-dir", state,
		"--authz-policy", pol, "--authz-audit", audit)
	c := authzClient(t, sock)
	ctx := context.Background()
	res, err := c.AuthZReq(ctx, ping)
	if err != nil || res.Allow || !strings.Contains(res.Msg, "no valid authorization policy") {
		t.Fatalf("without policy: %+v %v", res, err)
	}
	if res, err := c.AuthZRes(ctx, ping); err != nil || !res.Allow {
		t.Fatalf("AuthZRes must be answered: %+v %v", res, err)
	}
	if err := os.WriteFile(pol, []byte("presets: [baseline]\ndefault: allow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for {
		res, err = c.AuthZReq(ctx, ping)
		if err != nil {
			t.Fatal(err)
		}
		if res.Allow {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err = c.AuthZReq(ctx, privileged)
	if err != nil || res.Allow || !strings.Contains(res.Msg, "privileged") {
		t.Fatalf("privileged: %+v %v", res, err)
	}
	if err := os.WriteFile(pol, []byte("rules: [{name: x, deny: '1'}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	for !strings.Contains(p.stderr.String(), "keeping the last good policy") {
		time.Sleep(20 * time.Millisecond)
	}
	if res, err := c.AuthZReq(ctx, ping); err != nil || !res.Allow {
		t.Fatalf("after a broken edit: %+v %v", res, err)
	}
	p.stop(t)
	log, _ := os.ReadFile(audit)
	if !strings.Contains(string(log), `"rule":"baseline/privileged"`) {
		t.Errorf("audit log:\n%s", log)
	}
}

func TestAuthzTestAndLint(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	os.WriteFile(pol, []byte("presets: [baseline]\nrules:\n  - name: reads\n    allow: 'request.method == \"GET\"'\n"), 0o600)
	reqs := filepath.Join(dir, "reqs.json")
	os.WriteFile(reqs, []byte(`{"RequestMethod":"GET","RequestUri":"/v1.51/containers/json"}
{"RequestMethod":"POST","RequestUri":"/v1.51/containers/create","RequestBody":"eyJJbWFnZSI6ImEiLCJIb3N0Q29uZmlnIjp7IlByaXZpbGVnZWQiOnRydWV9fQ=="}
`), 0o600)
	run := func(args ...string) (string, error) {
		cmd := newAuthzCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetIn(strings.NewReader(`{"RequestMethod":"POST","RequestUri":"/grpc"}`))
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	out, err := run("test", "--json", "--policy", pol, reqs, "-")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{`reqs.json#1"`, `"decision":"allow"`, `"rule":"reads"`},
		{`reqs.json#2"`, `"decision":"deny"`, `"rule":"baseline/privileged"`},
		{`"request":"-"`, `"decision":"deny"`, `"rule":"baseline/buildkit-control-api"`},
	}
	if len(lines) != len(want) {
		t.Fatalf("test output:\n%s", out)
	}
	for i, ws := range want {
		for _, w := range ws {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d lacks %s: %s", i+1, w, lines[i])
			}
		}
	}
	if out, err := run("test", "--policy", pol, reqs); err != nil || !strings.Contains(out, "DECISION") {
		t.Errorf("table output: %q %v", out, err)
	}
	if out, err := run("lint", "--policy", pol); err != nil || !strings.Contains(out, "ok") {
		t.Errorf("lint: %q %v", out, err)
	}
	os.WriteFile(pol, []byte("rules:\n  - name: good\n    allow: 'true'\n  - name: bad\n    deny: 'container.privilegd'\n"), 0o600)
	if _, err := run("lint", "--policy", pol); err == nil || !strings.Contains(err.Error(), `p.yaml:4: rule "bad"`) {
		t.Errorf("lint of a broken policy: %v", err)
	}
}

// The authz decisions are counted on the --metrics-addr registry, labelled
// with the plugin's name.
func TestServeAuthzMetrics(t *testing.T) {
	sock, state := shortDir(t), shortDir(t)
	pol := filepath.Join(shortDir(t), "policy.yaml")
	if err := os.WriteFile(pol, []byte("presets: [baseline]\ndefault: allow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, nil, nil, "serve", "dockplug-authz", "--socket-dir", sock, "--state-dir", state,
		"--authz-policy", pol, "--metrics-addr", "127.0.0.1:0")
	c := authzClient(t, sock)
	if res, err := c.AuthZReq(context.Background(), privileged); err != nil || res.Allow {
		t.Fatalf("privileged: %+v %v", res, err)
	}
	body := scrapeMetrics(t, p)
	want := `dockplug_authz_decisions_total{action="container.create",decision="deny",phase="request",plugin="dockplug-authz"} 1`
	if !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %s:\n%s", want, body)
	}
	p.stop(t)
}
