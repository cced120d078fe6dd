package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dockplug/dockplug/authz"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const issuePolicy = `presets: [baseline]
allow-bind: [/srv/data]
rules:
  - name: no-latest
    deny: 'request.action == "container.create" && container.image.endsWith(":latest")'
    message: "pin an image tag"
  - name: ci-may-exec
    allow: 'user.name == "ci" && request.action == "container.exec.create"'
  - name: reads
    allow: 'request.method in ["GET", "HEAD"]'
default: deny
`

func createReq(body string) *authz.Request {
	return &authz.Request{RequestMethod: "POST", RequestURI: "/v1.51/containers/create",
		RequestHeaders: map[string]string{"Content-Type": "application/json"}, RequestBody: []byte(body)}
}

func TestIssuePolicy(t *testing.T) {
	f, err := ParseFile([]byte(issuePolicy))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(f, "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		req   *authz.Request
		allow bool
		rule  string
	}{
		{"latest", createReq(`{"Image":"a:latest"}`), false, "no-latest"},
		{"pinned but default deny", createReq(`{"Image":"a:1"}`), false, "default"},
		{"allowed bind", createReq(`{"Image":"a:latest","HostConfig":{"Binds":["/srv/data/x:/x"]}}`), false, "no-latest"},
		{"bind outside", createReq(`{"Image":"a:1","HostConfig":{"Binds":["/srv/database:/x"]}}`), false, "baseline/host-binds"},
		{"ci exec", &authz.Request{User: "ci", UserAuthNMethod: "TLS", RequestMethod: "POST", RequestURI: "/v1.51/containers/w/exec",
			RequestBody: []byte(`{"Cmd":["sh"]}`)}, true, "ci-may-exec"},
		{"ci privileged exec", &authz.Request{User: "ci", RequestMethod: "POST", RequestURI: "/v1.51/containers/w/exec",
			RequestBody: []byte(`{"Cmd":["sh"],"Privileged":true}`)}, false, "baseline/privileged-exec"},
		{"read", &authz.Request{RequestMethod: "GET", RequestURI: "/v1.51/containers/json"}, true, "reads"},
		{"unknown route", &authz.Request{RequestMethod: "GET", RequestURI: "/v1.51/nope"}, false, "normalize/route"},
	} {
		d := p.Decide(ctx, tc.req, false)
		if d.Allow != tc.allow || d.Rule != tc.rule {
			t.Errorf("%s: allow=%v rule=%s (%s), want %v %s", tc.name, d.Allow, d.Rule, d.Message, tc.allow, tc.rule)
		}
	}
	if d := p.Decide(ctx, createReq(`{"Image":"a:latest"}`), true); !d.Allow {
		t.Errorf("responses are allowed without response rules: %+v", d)
	}
}

func TestCompileErrorsNameRuleAndLine(t *testing.T) {
	for _, tc := range []struct{ policy, want string }{
		{"rules:\n  - name: ok\n    allow: 'true'\n  - name: typo\n    deny: 'container.imag == \"x\"'\n", `p.yaml:4: rule "typo"`},
		{"rules:\n  - name: notbool\n    deny: 'container.image'\n", `p.yaml:2: rule "notbool": evaluates to string`},
		{"rules:\n  - name: both\n    deny: 'true'\n    allow: 'true'\n", `rule "both": has both`},
		{"presets: [nope]\n", `unknown preset "nope"`},
		{"rules:\n  - name: x\n    dney: 'true'\n", `field dney not found`},
		{"default: maybe\n", `default: "maybe"`},
		{"allow-bind: [srv]\n", `not an absolute path`},
	} {
		f, err := ParseFile([]byte(tc.policy))
		if err == nil {
			_, err = Compile(f, "p.yaml")
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.policy, err, tc.want)
		}
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestEngineFailsClosedAndKeepsLastGoodPolicy(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	read := &authz.Request{RequestMethod: "GET", RequestURI: "/_ping"}

	e := NewEngine(path, quiet) // missing file
	if d := e.Decide(ctx, read, false); d.Allow || d.Rule != "no-policy" || !strings.Contains(d.Message, "no such file") {
		t.Fatalf("missing policy: %+v", d)
	}
	if d := e.Decide(ctx, read, true); !d.Allow {
		t.Errorf("responses are still answered: %+v", d)
	}
	writeFile(t, path, "rules: [{name: bad, allow: 'nope'}]\n")
	if err := e.Reload(); err == nil {
		t.Fatal("broken policy loaded")
	}
	if d := e.Decide(ctx, read, false); d.Allow || !strings.Contains(d.Message, "undeclared reference") {
		t.Fatalf("broken policy: %+v", d)
	}
	writeFile(t, path, "default: allow\n")
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(ctx, read, false); !d.Allow {
		t.Fatalf("good policy: %+v", d)
	}
	writeFile(t, path, "default: allow\nrules: [{name: x, deny: '1'}]\n")
	if err := e.Reload(); err == nil {
		t.Fatal("broken edit loaded")
	}
	if d := e.Decide(ctx, read, false); !d.Allow {
		t.Fatalf("the last good policy must stay: %+v", d)
	}
	if e.Err() == nil {
		t.Error("the broken edit's error is kept for reporting")
	}
	if d := NewEngine("", quiet).Decide(ctx, read, false); d.Allow || !strings.Contains(d.Message, "--authz-policy") {
		t.Errorf("no policy configured: %+v", d)
	}
}

func TestWatchReloadsOnSIGHUPAndFileChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, "default: deny\n")
	reloads := make(chan bool, 16)
	e := NewEngine(path, quiet)
	e.OnReload = func(ok bool) { reloads <- ok }
	hup := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx, hup) }()
	read := &authz.Request{RequestMethod: "GET", RequestURI: "/_ping"}

	hup <- syscall.SIGHUP
	if ok := <-reloads; !ok {
		t.Fatal("SIGHUP reload failed")
	}
	// Replace the file by rename, as editors do; wait for the reload that
	// sees it.
	tmp := path + ".tmp"
	writeFile(t, tmp, "default: allow\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	for !e.Decide(ctx, read, false).Allow {
		<-reloads
	}
	writeFile(t, path, "default: [broken\n")
	for ok := true; ok; ok = <-reloads {
	}
	if !e.Decide(ctx, read, false).Allow {
		t.Fatal("a broken edit replaced the last good policy")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPanicDeniesAndAuditHasNoSecrets(t *testing.T) {
	p := baselineAllow(t)
	if d := p.Decide(context.Background(), nil, false); d.Allow || d.Rule != "panic" {
		t.Fatalf("nil request: %+v", d)
	}
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	e := &Engine{log: quiet}
	e.cur.Store(p)
	pl := NewPlugin(e, NewAudit(&buf), m)
	req := createReq(`{"Image":"a","Env":["DB_PASSWORD=hunter2"],"HostConfig":{"Privileged":true}}`)
	req.RequestURI += "?name=x&token=s3cr3t"
	req.RequestHeaders["X-Registry-Auth"] = "eyJwYXNzd29yZCI6Imh1bnRlcjIifQ=="
	res, err := pl.AuthZReq(context.Background(), req)
	if err != nil || res.Allow || res.Msg == "" {
		t.Fatalf("got %+v, %v", res, err)
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("audit line %q: %v", buf.String(), err)
	}
	for _, k := range []string{"time", "user", "action", "path", "decision", "rule", "message", "eval_us"} {
		if _, ok := line[k]; !ok {
			t.Errorf("audit line lacks %q: %s", k, buf.String())
		}
	}
	for _, secret := range []string{"hunter2", "s3cr3t", "eyJwYXNz"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("audit line leaks %q: %s", secret, buf.String())
		}
	}
	if got := testutil.ToFloat64(m.decisions.WithLabelValues("request", "container.create", "deny")); got != 1 {
		t.Errorf("deny counter %v", got)
	}
}

// The poll that backs up inotify sees a replacement by rename (a new
// inode) and an edit in place (size or mtime).
func TestStampSeesEveryChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, "default: deny\n")
	a := stampOf(path)
	tmp := path + ".tmp"
	writeFile(t, tmp, "default: deny\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	b := stampOf(path)
	if a == b || !b.ok {
		t.Fatalf("a rename with the same content is not seen: %+v %+v", a, b)
	}
	writeFile(t, path, "default: allow\n")
	if c := stampOf(path); c == b {
		t.Fatalf("an edit in place is not seen: %+v", c)
	}
	if s := stampOf(filepath.Join(t.TempDir(), "none")); s.ok {
		t.Fatalf("a missing file has a stamp: %+v", s)
	}
}
