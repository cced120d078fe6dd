package plugin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testKind is a minimal protocol for exercising the core.
type testKind struct {
	impl    string
	slow    chan struct{} // Test.Slow blocks until closed
	entered chan struct{}
	// cancelled receives the time Test.Stuck saw its context end.
	cancelled chan time.Time
	calls     atomic.Int64
}

type echoReq struct{ Msg string }
type echoResp struct{ Msg string }

func (k *testKind) Implements() string { return k.impl }
func (k *testKind) Methods() map[string]plugin.Method {
	return map[string]plugin.Method{
		k.impl + ".Echo": plugin.Handle(func(ctx context.Context, r *echoReq) (*echoResp, error) {
			k.calls.Add(1)
			return &echoResp{Msg: r.Msg}, nil
		}),
		k.impl + ".Nil": plugin.Handle(func(ctx context.Context, r *echoReq) (*echoResp, error) {
			return nil, nil
		}),
		k.impl + ".Fail": plugin.Handle(func(ctx context.Context, r *echoReq) (*echoResp, error) {
			return nil, plugin.NotFound("no such thing: %s", r.Msg)
		}),
		k.impl + ".Plain": plugin.Handle(func(ctx context.Context, r *echoReq) (*echoResp, error) {
			return nil, errors.New("plain failure")
		}),
		k.impl + ".Panic": func(ctx context.Context, body []byte) (any, error) {
			panic("driver bug")
		},
		k.impl + ".WaitCtx": func(ctx context.Context, body []byte) (any, error) {
			close(k.entered)
			<-ctx.Done()
			time.Sleep(50 * time.Millisecond) // e.g. rolling back
			k.calls.Add(1)
			return nil, ctx.Err()
		},
		// Stuck notes when its context ends but keeps running until slow
		// is closed, like a driver call that ignores cancellation.
		k.impl + ".Stuck": func(ctx context.Context, body []byte) (any, error) {
			close(k.entered)
			<-ctx.Done()
			k.cancelled <- time.Now()
			<-k.slow
			k.calls.Add(1)
			return nil, ctx.Err()
		},
		k.impl + ".Slow": func(ctx context.Context, body []byte) (any, error) {
			close(k.entered)
			<-k.slow
			k.calls.Add(1)
			return echoResp{Msg: "finished"}, nil
		},
	}
}

func newKind(impl string) *testKind {
	return &testKind{impl: impl, slow: make(chan struct{}), entered: make(chan struct{}), cancelled: make(chan time.Time, 1)}
}

func rawPost(t *testing.T, addr, method string, body io.Reader, header map[string]string) (int, string) {
	t.Helper()
	path := strings.TrimPrefix(addr, "unix://")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "http://plugin.moby.localhost/"+method, body)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestActivateListsEveryKind(t *testing.T) {
	r := plugintest.Serve(t, "multi", newKind("VolumeDriver"), newKind("IpamDriver"))
	m, err := r.Client.Activate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !m.Has("VolumeDriver") || !m.Has("IpamDriver") || m.Has("volumedriver") {
		t.Fatalf("Implements = %v (case-sensitive, G20)", m.Implements)
	}
	// The daemon sends an empty body with no Content-Type (G19).
	code, body := rawPost(t, r.Server.Addr(), "Plugin.Activate", nil, nil)
	if code != 200 || !strings.Contains(body, `"Implements":["VolumeDriver","IpamDriver"]`) {
		t.Fatalf("raw activate: %d %s", code, body)
	}
}

func TestRequestsWithoutContentTypeOrBody(t *testing.T) {
	k := newKind("T")
	r := plugintest.Serve(t, "nobody", k)
	// Empty body: decoded as the zero request (G19).
	code, body := rawPost(t, r.Server.Addr(), "T.Echo", nil, nil)
	if code != 200 || strings.TrimSpace(body) != `{"Msg":""}` {
		t.Fatalf("empty body: %d %q", code, body)
	}
	// A nil result is answered {} (an empty 200 body breaks the daemon, G19).
	code, body = rawPost(t, r.Server.Addr(), "T.Nil", strings.NewReader("{}\n"), map[string]string{"Accept": plugin.MediaType})
	if code != 200 || strings.TrimSpace(body) != `{}` {
		t.Fatalf("nil result: %d %q", code, body)
	}
	var resp echoResp
	if err := r.Client.Call(context.Background(), "T.Echo", echoReq{Msg: "hi"}, &resp); err != nil || resp.Msg != "hi" {
		t.Fatalf("echo: %v %+v", err, resp)
	}
}

func TestErrorsCarryStatusAndErr(t *testing.T) {
	r := plugintest.Serve(t, "errs", newKind("T"))
	ctx := context.Background()
	cases := []struct {
		method string
		status int
		msg    string
	}{
		{"T.Fail", 404, "T.Fail: no such thing: x"},
		{"T.Plain", 500, "T.Plain: plain failure"},
		{"T.Nope", 404, "T.Nope: plugin errs does not implement T.Nope"},
		{"T.Panic", 500, "T.Panic: T.Panic: internal error: driver bug"},
	}
	for _, c := range cases {
		err := r.Client.Call(ctx, c.method, echoReq{Msg: "x"}, nil)
		var se *plugin.StatusError
		if !errors.As(err, &se) || se.Status != c.status || err.Error() != c.msg {
			t.Errorf("%s: got %v (%T), want %d %q", c.method, err, err, c.status, c.msg)
		}
	}
	// Bad JSON is a 400 with a clear message, and the server keeps serving.
	code, body := rawPost(t, r.Server.Addr(), "T.Echo", strings.NewReader("{not json"), nil)
	if code != 400 || !strings.Contains(body, `"Err":"decode request`) {
		t.Fatalf("bad json: %d %s", code, body)
	}
	code, _ = rawPost(t, r.Server.Addr(), "T.Echo", nil, nil)
	if code != 200 {
		t.Fatalf("server stopped serving after errors: %d", code)
	}
}

func TestBodyLimit(t *testing.T) {
	dir := t.TempDir()
	r, err := plugintest.StartIn(dir, plugin.Config{Name: "small", SocketDir: dir, MaxBodyBytes: 1024}, newKind("T"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	big := echoReq{Msg: strings.Repeat("a", 4096)}
	err = r.Client.Call(context.Background(), "T.Echo", big, nil)
	var se *plugin.StatusError
	if !errors.As(err, &se) || se.Status != 413 || !strings.Contains(se.Msg, "larger than 1024 bytes") {
		t.Fatalf("oversized body: %v", err)
	}
}

func TestStaleSocketIsReplacedLiveOneRefused(t *testing.T) {
	dir, _ := os.MkdirTemp("/tmp", "pt")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "stale.sock")
	// Leave a socket file with no listener, as a kill -9 does.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal("stale socket not left behind")
	}
	r, err := plugintest.StartIn(dir, plugin.Config{Name: "stale", SocketDir: dir}, newKind("T"))
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	if _, err := r.Client.Activate(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", st.Mode().Perm())
	}
	// A second server under the same name must refuse to start.
	_, err = plugintest.StartIn(dir, plugin.Config{Name: "stale", SocketDir: dir}, newKind("T"))
	if err == nil || !strings.Contains(err.Error(), "plugin stale is already running") {
		t.Fatalf("second server: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket not removed on exit: %v", err)
	}
}

// A socket at a chosen path and mode (an operator-only socket, away from
// the daemon's socket dir) gets the same stale and live handling as the
// public one, and is removed on exit.
func TestSocketPathAndMode(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "state", "admin.sock")
	cfg := plugin.Config{Name: "private", SocketPath: path, SocketMode: 0o600, SocketDir: filepath.Join(dir, "public")}
	r, err := plugintest.StartIn(dir, cfg, newKind("T"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Server.Addr() != "unix://"+path {
		t.Fatalf("addr %s, want unix://%s", r.Server.Addr(), path)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want mode 0600", st, err)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir: %v %v, want mode 0700 for a private socket", st, err)
	}
	if _, err := os.Stat(cfg.SocketDir); !os.IsNotExist(err) {
		t.Fatalf("the public socket dir was made: %v", err)
	}
	if _, err := r.Client.Activate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := plugintest.StartIn(dir, cfg, newKind("T")); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second server on a live socket: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after shutdown: %v", err)
	}
	// A stale socket there (kill -9) is replaced.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	r, err = plugintest.StartIn(dir, cfg, newKind("T"))
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []plugin.Config{
		{Name: "p", SocketPath: path, TCPAddr: "127.0.0.1:0", Insecure: true},
		{Name: "p", SocketMode: fs.ModeSocket | 0o600},
	} {
		if _, err := plugin.NewServer(bad, newKind("T")); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestGracefulShutdownWaitsForInFlightCalls(t *testing.T) {
	k := newKind("T")
	r, err := plugintest.Start("graceful", k)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(r.SocketDir)
	res := make(chan error, 1)
	go func() {
		var out echoResp
		err := r.Client.Call(context.Background(), "T.Slow", nil, &out)
		if err == nil && out.Msg != "finished" {
			err = fmt.Errorf("got %+v", out)
		}
		res <- err
	}()
	<-k.entered
	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop() }()
	select {
	case <-stopped:
		t.Fatal("Serve returned while a call was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(k.slow)
	if err := <-res; err != nil {
		t.Fatalf("in-flight call: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// A call that never finishes cannot hold shutdown forever: Serve gives it
// ShutdownTimeout, then cancels it and returns. The lower bound is exact:
// the call keeps its context, and Serve keeps serving it, for the whole
// grace period. The upper bound is only a liveness bound, generous so that
// a loaded machine cannot make it flaky.
func TestShutdownIsBounded(t *testing.T) {
	const grace = 300 * time.Millisecond
	k := newKind("T")
	dir, _ := os.MkdirTemp("/tmp", "pt")
	defer os.RemoveAll(dir)
	r, err := plugintest.StartIn(dir, plugin.Config{Name: "bounded", SocketDir: dir, ShutdownTimeout: grace}, k)
	if err != nil {
		t.Fatal(err)
	}
	defer close(k.slow) // the call ignores cancellation: it ends only here
	go r.Client.Call(context.Background(), "T.Stuck", nil, nil)
	<-k.entered
	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(grace + 10*time.Second):
		t.Fatalf("Serve has not returned %v after shutdown began, with a grace period of %v", time.Since(start), grace)
	}
	returned := time.Since(start)
	if k.calls.Load() != 0 {
		t.Fatal("the call finished: the test did not shut down with a call in flight")
	}
	select {
	case at := <-k.cancelled:
		if d := at.Sub(start); d < grace {
			t.Fatalf("the in-flight call was cancelled %v after shutdown began, before the grace period of %v", d, grace)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight call's context was never cancelled")
	}
	if returned < grace {
		t.Fatalf("Serve returned after %v, before the grace period of %v, while a call was in flight", returned, grace)
	}
	if _, err := os.Stat(filepath.Join(dir, "bounded.sock")); !os.IsNotExist(err) {
		t.Fatal("socket left behind after a forced shutdown")
	}
}

func TestMetricsCountCallsAndErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := plugin.NewMetrics(reg)
	dir, _ := os.MkdirTemp("/tmp", "pt")
	defer os.RemoveAll(dir)
	r, err := plugintest.StartIn(dir, plugin.Config{Name: "metered", SocketDir: dir, Metrics: m}, newKind("T"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	ctx := context.Background()
	for range 3 {
		r.Client.Call(ctx, "T.Echo", echoReq{}, nil)
	}
	r.Client.Call(ctx, "T.Fail", echoReq{}, nil)
	r.Client.Call(ctx, "T.Panic", echoReq{}, nil)
	want := `
# HELP dockplug_plugin_calls_total Plugin calls answered, by plugin and method.
# TYPE dockplug_plugin_calls_total counter
dockplug_plugin_calls_total{method="Plugin.Activate",plugin="metered"} 0
dockplug_plugin_calls_total{method="T.Echo",plugin="metered"} 3
dockplug_plugin_calls_total{method="T.Fail",plugin="metered"} 1
dockplug_plugin_calls_total{method="T.Nil",plugin="metered"} 0
dockplug_plugin_calls_total{method="T.Panic",plugin="metered"} 1
dockplug_plugin_calls_total{method="T.Plain",plugin="metered"} 0
dockplug_plugin_calls_total{method="T.Slow",plugin="metered"} 0
dockplug_plugin_calls_total{method="T.Stuck",plugin="metered"} 0
dockplug_plugin_calls_total{method="T.WaitCtx",plugin="metered"} 0
dockplug_plugin_calls_total{method="unknown",plugin="metered"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "dockplug_plugin_calls_total"); err != nil {
		t.Fatal(err)
	}
	wantErrs := `
# HELP dockplug_plugin_call_errors_total Plugin calls answered with an error, by plugin and method.
# TYPE dockplug_plugin_call_errors_total counter
dockplug_plugin_call_errors_total{method="Plugin.Activate",plugin="metered"} 0
dockplug_plugin_call_errors_total{method="T.Echo",plugin="metered"} 0
dockplug_plugin_call_errors_total{method="T.Fail",plugin="metered"} 1
dockplug_plugin_call_errors_total{method="T.Nil",plugin="metered"} 0
dockplug_plugin_call_errors_total{method="T.Panic",plugin="metered"} 1
dockplug_plugin_call_errors_total{method="T.Plain",plugin="metered"} 0
dockplug_plugin_call_errors_total{method="T.Slow",plugin="metered"} 0
dockplug_plugin_call_errors_total{method="T.Stuck",plugin="metered"} 0
dockplug_plugin_call_errors_total{method="T.WaitCtx",plugin="metered"} 0
dockplug_plugin_call_errors_total{method="unknown",plugin="metered"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantErrs), "dockplug_plugin_call_errors_total"); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg, "dockplug_plugin_call_duration_seconds"); n != 10 {
		t.Fatalf("histograms = %d", n)
	}
}

func TestOnlyPOST(t *testing.T) {
	r := plugintest.Serve(t, "post", newKind("T"))
	path := strings.TrimPrefix(r.Server.Addr(), "unix://")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", path)
	}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://x/T.Echo")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct{ Err string }
	if resp.StatusCode != 405 || json.Unmarshal(b, &e) != nil || e.Err == "" {
		t.Fatalf("GET: %d %s", resp.StatusCode, b)
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg plugin.Config
		msg string
	}{
		{plugin.Config{}, "no plugin name"},
		{plugin.Config{Name: "a/b"}, "plain file name"},
		{plugin.Config{Name: ".."}, "plain file name"},
		{plugin.Config{Name: "tcp", TCPAddr: "127.0.0.1:0"}, "insecure"},
	} {
		_, err := plugin.NewServer(c.cfg, newKind("T"))
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.msg)
		}
	}
	if _, err := plugin.NewServer(plugin.Config{Name: "dup"}, newKind("T"), newKind("T")); err == nil {
		t.Error("duplicate methods accepted")
	}
}

// A forced shutdown cancels the calls' contexts and waits for them to
// return, so the caller never closes state under a running call.
func TestForcedShutdownWaitsForCancelledCalls(t *testing.T) {
	k := newKind("T")
	dir, _ := os.MkdirTemp("/tmp", "pt")
	defer os.RemoveAll(dir)
	r, err := plugintest.StartIn(dir, plugin.Config{Name: "forced", SocketDir: dir, ShutdownTimeout: 50 * time.Millisecond}, k)
	if err != nil {
		t.Fatal(err)
	}
	go r.Client.Call(context.Background(), "T.WaitCtx", nil, nil)
	<-k.entered
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if k.calls.Load() != 1 {
		t.Fatal("Serve returned before the cancelled call finished")
	}
}

func TestActivatedTCPListenerNeedsTLSOrInsecure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := plugin.NewServer(plugin.Config{Name: "act", Listener: ln}, newKind("T")); err == nil || !strings.Contains(err.Error(), "needs TLS") {
		t.Fatalf("plain activated TCP: %v", err)
	}
	p := newPKI(t)
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	dir := shortDir(t)
	r, err := plugintest.StartIn(dir, plugin.Config{Name: "act", Listener: ln2,
		TLS: &plugin.ServerTLS{CertFile: p.serverCert, KeyFile: p.serverKey}}, newKind("T"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if !strings.HasPrefix(r.Server.Addr(), "https://127.0.0.1:") {
		t.Fatalf("addr %s", r.Server.Addr())
	}
	c, _ := plugin.NewClient(r.Server.Addr(), plugin.WithTLS(&plugin.TLSOptions{CAFile: p.ca}), plugin.WithBackoff(plugin.Backoff{}))
	if _, err := c.Activate(context.Background()); err != nil {
		t.Fatalf("activate over TLS: %v", err)
	}
}
