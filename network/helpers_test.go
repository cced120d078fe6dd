package network

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

// call is one driver invocation as the fake driver saw it.
type call struct {
	method string
	req    any
}

// fakeDriver implements only the mandatory Driver methods and records every
// call. Answers come from its fields; err fails every method; panicOn
// panics in the named method.
type fakeDriver struct {
	mu    sync.Mutex
	calls []call

	caps      *Capabilities
	epResp    *CreateEndpointResponse
	operResp  *EndpointOperInfoResponse
	joinResp  *JoinResponse
	allocResp *AllocateNetworkResponse
	gwResp    *GwAllocCheckResponse
	err       error
	errOn     string // "" = every method
	undoErr   error  // returned by DeleteEndpoint/Leave
	panicOn   string
}

func (f *fakeDriver) record(method string, req any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{method, req})
	if f.panicOn == method {
		panic("fake driver panics in " + method)
	}
	if f.err != nil && (f.errOn == "" || f.errOn == method) {
		return f.err
	}
	return nil
}

// called returns the requests the driver got for method.
func (f *fakeDriver) called(method string) []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []any
	for _, c := range f.calls {
		if c.method == method {
			out = append(out, c.req)
		}
	}
	return out
}

// answer returns field read under the lock (tests change answers between
// calls while the server goroutine reads them).
func answer[T any](f *fakeDriver, field *T) T {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *field
}

// set changes the fake's answers under the lock.
func (f *fakeDriver) set(fn func(f *fakeDriver)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeDriver) ncalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeDriver) GetCapabilities(ctx context.Context) (*Capabilities, error) {
	if err := f.record("GetCapabilities", nil); err != nil {
		return nil, err
	}
	if c := answer(f, &f.caps); c != nil {
		return c, nil
	}
	return &Capabilities{Scope: ScopeLocal}, nil
}

func (f *fakeDriver) CreateNetwork(ctx context.Context, req *CreateNetworkRequest) error {
	return f.record("CreateNetwork", req)
}

func (f *fakeDriver) DeleteNetwork(ctx context.Context, req *DeleteNetworkRequest) error {
	return f.record("DeleteNetwork", req)
}

func (f *fakeDriver) CreateEndpoint(ctx context.Context, req *CreateEndpointRequest) (*CreateEndpointResponse, error) {
	if err := f.record("CreateEndpoint", req); err != nil {
		return nil, err
	}
	return answer(f, &f.epResp), nil
}

func (f *fakeDriver) EndpointOperInfo(ctx context.Context, req *EndpointOperInfoRequest) (*EndpointOperInfoResponse, error) {
	if err := f.record("EndpointOperInfo", req); err != nil {
		return nil, err
	}
	return answer(f, &f.operResp), nil
}

func (f *fakeDriver) DeleteEndpoint(ctx context.Context, req *DeleteEndpointRequest) error {
	if err := f.record("DeleteEndpoint", req); err != nil {
		return err
	}
	return answer(f, &f.undoErr)
}

func (f *fakeDriver) Join(ctx context.Context, req *JoinRequest) (*JoinResponse, error) {
	if err := f.record("Join", req); err != nil {
		return nil, err
	}
	return answer(f, &f.joinResp), nil
}

func (f *fakeDriver) Leave(ctx context.Context, req *LeaveRequest) error {
	if err := f.record("Leave", req); err != nil {
		return err
	}
	return answer(f, &f.undoErr)
}

// fullDriver adds every optional interface.
type fullDriver struct{ *fakeDriver }

func (f fullDriver) DiscoverNew(ctx context.Context, req *DiscoveryNotification) error {
	return f.record("DiscoverNew", req)
}

func (f fullDriver) DiscoverDelete(ctx context.Context, req *DiscoveryNotification) error {
	return f.record("DiscoverDelete", req)
}

func (f fullDriver) AllocateNetwork(ctx context.Context, req *AllocateNetworkRequest) (*AllocateNetworkResponse, error) {
	if err := f.record("AllocateNetwork", req); err != nil {
		return nil, err
	}
	return answer(f.fakeDriver, &f.allocResp), nil
}

func (f fullDriver) FreeNetwork(ctx context.Context, req *FreeNetworkRequest) error {
	return f.record("FreeNetwork", req)
}

func (f fullDriver) GwAllocCheck(ctx context.Context, req *GwAllocCheckRequest) (*GwAllocCheckResponse, error) {
	if err := f.record("GwAllocCheck", req); err != nil {
		return nil, err
	}
	return answer(f.fakeDriver, &f.gwResp), nil
}

func (f fullDriver) ProgramExternalConnectivity(ctx context.Context, req *ProgramExternalConnectivityRequest) error {
	return f.record("ProgramExternalConnectivity", req)
}

func (f fullDriver) RevokeExternalConnectivity(ctx context.Context, req *RevokeExternalConnectivityRequest) error {
	return f.record("RevokeExternalConnectivity", req)
}

var (
	_ Discoverer           = fullDriver{}
	_ NetworkAllocator     = fullDriver{}
	_ GwAllocChecker       = fullDriver{}
	_ ExternalConnectivity = fullDriver{}
)

// serve serves d through a Handler on a real unix socket and returns a
// Client for it and the raw plugin client.
func serve(t *testing.T, d Driver) (*Client, *plugin.Client) {
	t.Helper()
	r := plugintest.Serve(t, "net", NewHandler(d))
	return NewClient(r.Client), r.Client
}

// rawServe serves h on a unix socket with plain net/http, to answer what
// our Handler never would (200 + Err, empty bodies, a broken rule), and
// returns a Client for it.
func rawServe(t *testing.T, h http.Handler) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "nt")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "raw.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	pc, err := plugin.NewClient("unix://"+path, plugin.WithBackoff(plugintest.TestBackoff))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pc.Close()
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("raw server: %v", err)
		}
		os.RemoveAll(dir)
	})
	return NewClient(pc)
}

// recorder is a raw plugin that answers per path and records what it got.
type recorder struct {
	mu      sync.Mutex
	paths   []string
	bodies  [][]byte
	answers map[string]rawAnswer // by method name; "" is the default
}

type rawAnswer struct {
	status int // 0 = 200
	body   string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	method := strings.TrimPrefix(r.URL.Path, "/")
	rec.mu.Lock()
	rec.paths = append(rec.paths, method)
	rec.bodies = append(rec.bodies, body)
	a, ok := rec.answers[method]
	if !ok {
		a = rec.answers[""]
	}
	rec.mu.Unlock()
	if a.status != 0 {
		w.WriteHeader(a.status)
	}
	io.WriteString(w, a.body)
}

func (rec *recorder) seen() ([]string, [][]byte) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.paths), slices.Clone(rec.bodies)
}

// rawPost sends body as is (even malformed JSON) to a plugin client's socket.
func rawPost(t *testing.T, pc *plugin.Client, method string, body []byte) (int, string) {
	t.Helper()
	path := strings.TrimPrefix(pc.Addr(), "unix://")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("http://plugin.moby.localhost/"+method, "", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// statusOf returns the *plugin.StatusError in err, failing t if there is none.
func statusOf(t *testing.T, err error) *plugin.StatusError {
	t.Helper()
	var se *plugin.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("want a *plugin.StatusError, got %T: %v", err, err)
	}
	return se
}
