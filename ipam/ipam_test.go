package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

// fakeDriver records the requests it gets and answers from its fields.
type fakeDriver struct {
	mu    sync.Mutex
	calls []string
	last  any

	err      error  // returned by every method when set
	panicMsg string // panics in every method when set

	caps   CapabilitiesResponse
	spaces AddressSpacesResponse
	pool   *RequestPoolResponse
	addr   *RequestAddressResponse
}

func newFake() *fakeDriver {
	return &fakeDriver{
		caps:   CapabilitiesResponse{RequiresMACAddress: true},
		spaces: AddressSpacesResponse{LocalDefaultAddressSpace: "local", GlobalDefaultAddressSpace: "global"},
		pool:   &RequestPoolResponse{PoolID: "local/10.9.0.0/16", Pool: "10.9.0.0/16", Data: map[string]string{Gateway: "10.9.0.254/16"}},
		addr:   &RequestAddressResponse{Address: "10.9.0.2/16"},
	}
}

func (f *fakeDriver) record(name string, req any) error {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	f.last = req
	f.mu.Unlock()
	if f.panicMsg != "" {
		panic(f.panicMsg)
	}
	return f.err
}

func (f *fakeDriver) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeDriver) lastReq() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fakeDriver) GetCapabilities(ctx context.Context) (*CapabilitiesResponse, error) {
	if err := f.record("GetCapabilities", nil); err != nil {
		return nil, err
	}
	c := f.caps
	return &c, nil
}

func (f *fakeDriver) GetDefaultAddressSpaces(ctx context.Context) (*AddressSpacesResponse, error) {
	if err := f.record("GetDefaultAddressSpaces", nil); err != nil {
		return nil, err
	}
	s := f.spaces
	return &s, nil
}

func (f *fakeDriver) RequestPool(ctx context.Context, req *RequestPoolRequest) (*RequestPoolResponse, error) {
	if err := f.record("RequestPool", req); err != nil {
		return nil, err
	}
	return f.pool, nil
}

func (f *fakeDriver) ReleasePool(ctx context.Context, req *ReleasePoolRequest) error {
	return f.record("ReleasePool", req)
}

func (f *fakeDriver) RequestAddress(ctx context.Context, req *RequestAddressRequest) (*RequestAddressResponse, error) {
	if err := f.record("RequestAddress", req); err != nil {
		return nil, err
	}
	return f.addr, nil
}

func (f *fakeDriver) ReleaseAddress(ctx context.Context, req *ReleaseAddressRequest) error {
	return f.record("ReleaseAddress", req)
}

func serve(t *testing.T, d Driver) (*plugintest.Running, *Client) {
	t.Helper()
	r := plugintest.Serve(t, "ipamtest", NewHandler(d))
	return r, NewClient(r.Client)
}

func TestActivateImplementsIpamDriver(t *testing.T) {
	r, _ := serve(t, newFake())
	m, err := r.Client.Activate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// G20: exact, case-sensitive.
	if !m.Has("IpamDriver") || len(m.Implements) != 1 {
		t.Fatalf("Implements = %v, want [IpamDriver]", m.Implements)
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	_, c := serve(t, f)

	caps, err := c.GetCapabilities(ctx)
	if err != nil || !caps.RequiresMACAddress || caps.RequiresRequestReplay {
		t.Fatalf("GetCapabilities = %+v, %v", caps, err)
	}
	spaces, err := c.GetDefaultAddressSpaces(ctx)
	if err != nil || *spaces != f.spaces {
		t.Fatalf("GetDefaultAddressSpaces = %+v, %v", spaces, err)
	}

	preq := &RequestPoolRequest{AddressSpace: "local", Pool: "10.9.0.0/16", SubPool: "10.9.1.0/24",
		Options: map[string]string{"foo": "bar"}, V6: false}
	pool, err := c.RequestPool(ctx, preq)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pool, f.pool) {
		t.Fatalf("RequestPool = %+v, want %+v", pool, f.pool)
	}
	if got := f.lastReq(); !reflect.DeepEqual(got, preq) {
		t.Fatalf("driver got %+v, want %+v", got, preq)
	}
	// The "any pool" request of an IPv6 network: no Pool, null Options.
	if _, err := c.RequestPool(ctx, &RequestPoolRequest{AddressSpace: "local", V6: true}); err != nil {
		t.Fatal(err)
	}
	if got := f.lastReq().(*RequestPoolRequest); !got.V6 || got.Options != nil {
		t.Fatalf("driver got %+v", got)
	}

	areq := &RequestAddressRequest{PoolID: pool.PoolID, Options: map[string]string{OptRequestAddressType: Gateway}}
	addr, err := c.RequestAddress(ctx, areq)
	if err != nil || addr.Address != "10.9.0.2/16" {
		t.Fatalf("RequestAddress = %+v, %v", addr, err)
	}
	if got := f.lastReq().(*RequestAddressRequest); !got.IsGateway() || got.PoolID != pool.PoolID {
		t.Fatalf("driver got %+v", got)
	}
	if _, err := c.RequestAddress(ctx, &RequestAddressRequest{PoolID: "p", Address: "fd00::5"}); err != nil {
		t.Fatal(err)
	}

	if err := c.ReleaseAddress(ctx, &ReleaseAddressRequest{PoolID: pool.PoolID, Address: "10.9.0.2"}); err != nil {
		t.Fatal(err)
	}
	if got := f.lastReq().(*ReleaseAddressRequest); got.Address != "10.9.0.2" {
		t.Fatalf("driver got %+v", got)
	}
	if err := c.ReleasePool(ctx, &ReleasePoolRequest{PoolID: pool.PoolID}); err != nil {
		t.Fatal(err)
	}
	want := []string{"GetCapabilities", "GetDefaultAddressSpaces", "RequestPool", "RequestPool",
		"RequestAddress", "RequestAddress", "ReleaseAddress", "ReleasePool"}
	if got := f.called(); !reflect.DeepEqual(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
}

// G19: the daemon sends GetCapabilities and GetDefaultAddressSpaces with an
// empty body and no Content-Type; other bodies are ignored too.
func TestEmptyBodies(t *testing.T) {
	ctx := context.Background()
	r, _ := serve(t, newFake())
	for _, m := range []string{MethodGetCapabilities, MethodGetDefaultAddressSpaces} {
		for _, args := range []any{nil, struct{}{}, json.RawMessage(`"junk"`)} {
			body, err := r.Client.CallRaw(ctx, m, args)
			if err != nil {
				t.Fatalf("%s with %v: %v", m, args, err)
			}
			if !json.Valid(body) || len(body) < 2 {
				t.Fatalf("%s answered %q", m, body)
			}
		}
	}
}

// Every method with arguments gets a JSON object from the daemon, so an
// empty body is a daemon retry that lost it (plugin.WithDrainedRetry): it
// is a 400 and reaches no driver, even where the zero request would be
// valid (RequestPool: any pool). The argument-less methods still answer.
func TestEmptyBodyChangesNothing(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	r, _ := serve(t, f)
	for _, tc := range []struct{ method, err string }{
		{MethodGetCapabilities, ""},
		{MethodGetDefaultAddressSpaces, ""},
		{MethodRequestPool, "IpamDriver.RequestPool: request has no body"},
		{MethodReleasePool, "IpamDriver.ReleasePool: PoolID is required"},
		{MethodRequestAddress, "IpamDriver.RequestAddress: PoolID is required"},
		{MethodReleaseAddress, "IpamDriver.ReleaseAddress: PoolID is required"},
	} {
		_, err := r.Client.CallRaw(ctx, tc.method, nil)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%s with an empty body: %v", tc.method, err)
			}
			continue
		}
		wantStatus(t, err, 400, tc.err)
	}
	if got, want := f.called(), []string{"GetCapabilities", "GetDefaultAddressSpaces"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("driver calls %v, want only %v", got, want)
	}
	// {} is a request like the daemon's, with every field zero: served.
	if _, err := r.Client.CallRaw(ctx, MethodRequestPool, json.RawMessage(`{}`)); err != nil {
		t.Fatalf("RequestPool {}: %v", err)
	}
}

func wantStatus(t *testing.T, err error, status int, text string) {
	t.Helper()
	var se *plugin.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want *plugin.StatusError %d", err, err, status)
	}
	if se.Status != status {
		t.Fatalf("status = %d, want %d (%v)", se.Status, status, err)
	}
	if text != "" && err.Error() != text {
		t.Fatalf("err = %q, want %q", err.Error(), text)
	}
}

func TestDriverErrors(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	_, c := serve(t, f)
	calls := map[string]func() error{
		MethodGetCapabilities: func() error {
			caps, err := c.GetCapabilities(ctx)
			if caps == nil || *caps != (CapabilitiesResponse{}) {
				t.Errorf("GetCapabilities on error = %+v, want zero capabilities", caps)
			}
			return err
		},
		MethodGetDefaultAddressSpaces: func() error { _, err := c.GetDefaultAddressSpaces(ctx); return err },
		MethodRequestPool:             func() error { _, err := c.RequestPool(ctx, &RequestPoolRequest{}); return err },
		MethodReleasePool:             func() error { return c.ReleasePool(ctx, &ReleasePoolRequest{PoolID: "p"}) },
		MethodRequestAddress:          func() error { _, err := c.RequestAddress(ctx, &RequestAddressRequest{PoolID: "p"}); return err },
		MethodReleaseAddress:          func() error { return c.ReleaseAddress(ctx, &ReleaseAddressRequest{PoolID: "p"}) },
	}
	for _, tc := range []struct {
		err    error
		status int
		msg    string
	}{
		{errors.New("pool exhausted"), 500, "pool exhausted"},
		{plugin.NotFound("no pool %s", "p"), 404, "no pool p"},
		{plugin.Conflict("address in use"), 409, "address in use"},
	} {
		f.err = tc.err
		for m, call := range calls {
			// Non-200 + {"Err"} is what the daemon reads for IPAM (G12), and
			// every error reaches the caller as is: the daemon aborts on any
			// remote IPAM error (G13).
			wantStatus(t, call(), tc.status, m+": "+tc.msg)
		}
	}
}

// A driver that fills the response's Error field instead of returning an
// error still fails the call, with a non-200 (G12).
func TestResponseErrorFieldBecomesFailure(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	f.caps.Error = "caps broken"
	f.spaces.Error = "spaces broken"
	f.pool = &RequestPoolResponse{Error: "no more pools"}
	f.addr = &RequestAddressResponse{Error: "no more addresses"}
	_, c := serve(t, f)
	_, err := c.GetCapabilities(ctx)
	wantStatus(t, err, 500, "IpamDriver.GetCapabilities: caps broken")
	_, err = c.GetDefaultAddressSpaces(ctx)
	wantStatus(t, err, 500, "IpamDriver.GetDefaultAddressSpaces: spaces broken")
	_, err = c.RequestPool(ctx, &RequestPoolRequest{})
	wantStatus(t, err, 500, "IpamDriver.RequestPool: no more pools")
	_, err = c.RequestAddress(ctx, &RequestAddressRequest{PoolID: "p"})
	wantStatus(t, err, 500, "IpamDriver.RequestAddress: no more addresses")
}

// Driver answers the daemon would choke on are reported by the plugin.
func TestBadDriverAnswers(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	_, c := serve(t, f)
	for _, tc := range []struct {
		pool *RequestPoolResponse
		want string
	}{
		{nil, "driver returned no pool"},
		{&RequestPoolResponse{Pool: "10.0.0.0/8"}, "empty PoolID"},
		{&RequestPoolResponse{PoolID: "p", Pool: "10.0.0.1"}, `invalid Pool "10.0.0.1"`},
		{&RequestPoolResponse{PoolID: "p"}, `invalid Pool ""`},
	} {
		f.pool = tc.pool
		_, err := c.RequestPool(ctx, &RequestPoolRequest{})
		wantStatus(t, err, 500, "")
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("pool %+v: err = %v, want %q", tc.pool, err, tc.want)
		}
	}
	for _, tc := range []struct {
		addr *RequestAddressResponse
		want string
	}{
		{nil, "driver returned no address"},
		{&RequestAddressResponse{}, "driver returned no address"},
		{&RequestAddressResponse{Address: "10.0.0.2"}, `invalid Address "10.0.0.2" (want CIDR form`},
	} {
		f.addr = tc.addr
		_, err := c.RequestAddress(ctx, &RequestAddressRequest{PoolID: "p"})
		wantStatus(t, err, 500, "")
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("addr %+v: err = %v, want %q", tc.addr, err, tc.want)
		}
	}
}

// post sends body as is (the Client would refuse invalid JSON) and returns
// the status and the "Err" of the answer.
func post(t *testing.T, r *plugintest.Running, method, body string) (int, string) {
	t.Helper()
	path := strings.TrimPrefix(r.Server.Addr(), "unix://")
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post("http://plugin.moby.localhost/"+method, "", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Err string }
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("%s: answer is not JSON: %v", method, err)
	}
	return resp.StatusCode, e.Err
}

func TestRequestValidation(t *testing.T) {
	f := newFake()
	r, _ := serve(t, f)
	for _, tc := range []struct {
		method, body, want string
	}{
		{MethodReleasePool, `{}`, "PoolID is required"},
		{MethodReleasePool, `{"PoolID":""}`, "PoolID is required"},
		{MethodRequestAddress, `{"Address":"10.0.0.1"}`, "PoolID is required"},
		{MethodReleaseAddress, `{"Address":"10.0.0.1"}`, "PoolID is required"},
		{MethodRequestPool, `{"Pool":"10.0.0.0"}`, `invalid Pool "10.0.0.0": want CIDR form`},
		{MethodRequestPool, `{"Pool":"banana"}`, `invalid Pool "banana"`},
		{MethodRequestPool, `{"Pool":"10.0.0.0/8","SubPool":"10.1.0.0"}`, `invalid SubPool "10.1.0.0"`},
		{MethodRequestPool, `{"SubPool":"10.1.0.0/16"}`, `SubPool "10.1.0.0/16" given without Pool`},
		{MethodRequestPool, `{"Pool":"10.0.0.0/16","SubPool":"10.1.0.0/24"}`, `SubPool "10.1.0.0/24" is not inside Pool "10.0.0.0/16"`},
		{MethodRequestPool, `{"Pool":"10.0.0.0/16","SubPool":"10.0.0.0/8"}`, `is not inside Pool`},
		{MethodRequestPool, `{"Pool":"10.0.0.0/16","SubPool":"fd00::/64"}`, `is not inside Pool`},
		{MethodRequestAddress, `{"PoolID":"p","Address":"10.0.0.1/24"}`, `invalid Address "10.0.0.1/24": want a bare IP`},
		{MethodRequestAddress, `{"PoolID":"p","Address":"fe80::1%eth0"}`, `invalid Address "fe80::1%eth0"`},
		{MethodReleaseAddress, `{"PoolID":"p","Address":"nope"}`, `invalid Address "nope"`},
		// Bad JSON is a 400 too.
		{MethodRequestPool, `{"Pool":`, "decode request"},
		{MethodRequestAddress, `{"PoolID":1}`, "decode request"},
		{MethodReleasePool, `[]`, "decode request"},
		{MethodReleaseAddress, `{"Address":true}`, "decode request"},
	} {
		status, msg := post(t, r, tc.method, tc.body)
		if status != 400 || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s: %d %q, want 400 and %q", tc.method, tc.body, status, msg, tc.want)
		}
	}
	if calls := f.called(); len(calls) != 0 {
		t.Fatalf("invalid requests reached the driver: %v", calls)
	}
	// Valid edge cases pass: host bits in Pool, an "any /24" pool, a sub-pool
	// equal to the pool, an empty ReleaseAddress address, IPv6.
	for _, tc := range []struct{ method, body string }{
		{MethodRequestPool, `{"AddressSpace":"local","Pool":"10.0.0.1/16","SubPool":"10.0.0.0/16","Options":null,"V6":false}`},
		{MethodRequestPool, `{"Pool":"0.0.0.0/24"}`},
		{MethodRequestPool, `{"Pool":"fd00::/48","SubPool":"fd00:0:0:1::/64","V6":true}`},
		{MethodReleaseAddress, `{"PoolID":"p","Address":""}`},
		{MethodRequestAddress, `{"PoolID":"p","Address":"fd00::1","Options":null}`},
	} {
		if status, msg := post(t, r, tc.method, tc.body); status != 200 {
			t.Errorf("%s %s: %d %s", tc.method, tc.body, status, msg)
		}
	}
}

func TestPanickingDriver(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	_, c := serve(t, f)
	f.panicMsg = "boom"
	_, err := c.RequestPool(ctx, &RequestPoolRequest{})
	wantStatus(t, err, 500, "")
	if !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v", err)
	}
	f.panicMsg = ""
	if _, err := c.RequestPool(ctx, &RequestPoolRequest{}); err != nil {
		t.Fatalf("server did not survive the panic: %v", err)
	}
}

// The JSON keys are the daemon's Go field names (it encodes without tags).
func TestWireKeys(t *testing.T) {
	for _, tc := range []struct {
		v    any
		keys string
	}{
		{CapabilitiesResponse{Error: "e"}, "Error RequiresMACAddress RequiresRequestReplay"},
		{AddressSpacesResponse{Error: "e"}, "Error GlobalDefaultAddressSpace LocalDefaultAddressSpace"},
		{RequestPoolRequest{}, "AddressSpace Options Pool SubPool V6"},
		{RequestPoolResponse{Data: map[string]string{"k": "v"}, Error: "e"}, "Data Error Pool PoolID"},
		{ReleasePoolRequest{}, "PoolID"},
		{RequestAddressRequest{}, "Address Options PoolID"},
		{RequestAddressResponse{Data: map[string]string{"k": "v"}, Error: "e"}, "Address Data Error"},
		{ReleaseAddressRequest{}, "Address PoolID"},
	} {
		b, _ := json.Marshal(tc.v)
		var m map[string]any
		json.Unmarshal(b, &m)
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if got := strings.Join(keys, " "); got != tc.keys {
			t.Errorf("%T keys = %q, want %q", tc.v, got, tc.keys)
		}
	}
}

// rawServer answers each method with a canned status and body on a unix
// socket, and records the bodies it got: it plays a plugin that does what
// ours never does, to check the Client against the daemon's rules.
type rawServer struct {
	mu      sync.Mutex
	answers map[string]rawAnswer
	got     map[string][]byte
}

type rawAnswer struct {
	status int
	body   string
}

func (s *rawServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/")
	body := make([]byte, 0, 64)
	buf := make([]byte, 512)
	for {
		n, err := r.Body.Read(buf)
		body = append(body, buf[:n]...)
		if err != nil {
			break
		}
	}
	s.mu.Lock()
	s.got[method] = body
	a, ok := s.answers[method]
	s.mu.Unlock()
	if !ok {
		a = rawAnswer{404, "not found"}
	}
	w.WriteHeader(a.status)
	w.Write([]byte(a.body))
}

func (s *rawServer) set(method string, status int, body string) {
	s.mu.Lock()
	s.answers[method] = rawAnswer{status, body}
	s.mu.Unlock()
}

func (s *rawServer) body(method string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[method]
}

func startRaw(t *testing.T) (*rawServer, *Client) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "ipamraw")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "raw.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{answers: map[string]rawAnswer{}, got: map[string][]byte{}}
	hs := &http.Server{Handler: s}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		os.RemoveAll(dir)
	})
	pc, err := plugin.NewClient("unix://"+path, plugin.WithBackoff(plugin.Backoff{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	return s, NewClient(pc)
}

// G12: the daemon's IPAM error key on 200 is "Error"; "Err" on a 200 is
// success, and on a non-200 only "Err" is extracted.
func TestClientErrorConventionsG12(t *testing.T) {
	ctx := context.Background()
	s, c := startRaw(t)

	// 200 + Error: "remote: <Error>".
	s.set(MethodRequestPool, 200, `{"Error":"no pools left"}`)
	_, err := c.RequestPool(ctx, &RequestPoolRequest{})
	var re *RemoteError
	if !errors.As(err, &re) || err.Error() != "remote: no pools left" || re.Method != MethodRequestPool {
		t.Fatalf("200+Error: err = %v (%T)", err, err)
	}
	s.set(MethodReleasePool, 200, `{"Error":"busy"}`)
	if err := c.ReleasePool(ctx, &ReleasePoolRequest{PoolID: "p"}); err == nil || err.Error() != "remote: busy" {
		t.Fatalf("ReleasePool 200+Error: err = %v", err)
	}

	// The trap: 200 + Err is SUCCESS for the daemon (moby/libnetwork#1613).
	s.set(MethodRequestPool, 200, `{"Err":"this error is ignored","PoolID":"p1","Pool":"10.5.0.0/16"}`)
	pool, err := c.RequestPool(ctx, &RequestPoolRequest{})
	if err != nil || pool.PoolID != "p1" {
		t.Fatalf("200+Err: pool = %+v, err = %v; the daemon treats it as success", pool, err)
	}
	s.set(MethodReleaseAddress, 200, `{"Err":"this error is ignored too"}`)
	if err := c.ReleaseAddress(ctx, &ReleaseAddressRequest{PoolID: "p", Address: "10.5.0.3"}); err != nil {
		t.Fatalf("ReleaseAddress 200+Err: %v; the daemon treats it as success", err)
	}

	// Non-200: only "Err" is extracted; an "Error" body shows as raw text.
	s.set(MethodRequestAddress, 500, `{"Err":"exhausted"}`)
	_, err = c.RequestAddress(ctx, &RequestAddressRequest{PoolID: "p"})
	wantStatus(t, err, 500, "IpamDriver.RequestAddress: exhausted")
	s.set(MethodRequestAddress, 409, `{"Error":"exhausted"}`)
	_, err = c.RequestAddress(ctx, &RequestAddressRequest{PoolID: "p"})
	wantStatus(t, err, 409, `IpamDriver.RequestAddress: {"Error":"exhausted"}`)
	s.set(MethodGetDefaultAddressSpaces, 503, "overloaded\n")
	_, err = c.GetDefaultAddressSpaces(ctx)
	wantStatus(t, err, 503, "IpamDriver.GetDefaultAddressSpaces: overloaded\n") // raw, as the daemon

	// G19: an empty 200 body is an error.
	s.set(MethodGetDefaultAddressSpaces, 200, "")
	if _, err := c.GetDefaultAddressSpaces(ctx); err == nil {
		t.Fatal("empty 200 body accepted")
	}
	s.set(MethodReleasePool, 200, "")
	if err := c.ReleasePool(ctx, &ReleasePoolRequest{PoolID: "p"}); err == nil {
		t.Fatal("empty 200 body accepted")
	}
	// Decoding is case-insensitive and ignores unknown keys and trailing data.
	s.set(MethodGetDefaultAddressSpaces, 200, `{"localdefaultaddressspace":"L","Extra":1} trailing`)
	if sp, err := c.GetDefaultAddressSpaces(ctx); err != nil || sp.LocalDefaultAddressSpace != "L" {
		t.Fatalf("GetDefaultAddressSpaces = %+v, %v", sp, err)
	}
}

func TestClientDaemonChecks(t *testing.T) {
	ctx := context.Background()
	s, c := startRaw(t)

	// Pool must parse as a prefix, with netip's error text like the daemon.
	s.set(MethodRequestPool, 200, `{"PoolID":"p","Pool":"10.0.0.0"}`)
	_, err := c.RequestPool(ctx, &RequestPoolRequest{})
	if err == nil || !strings.Contains(err.Error(), `netip.ParsePrefix("10.0.0.0")`) {
		t.Fatalf("unparsable Pool: err = %v", err)
	}
	s.set(MethodRequestPool, 200, `{"PoolID":"p"}`)
	if _, err := c.RequestPool(ctx, &RequestPoolRequest{}); err == nil {
		t.Fatal("missing Pool accepted")
	}

	// RequestAddress: no Address is ErrNoAddress; a bare IP is not CIDR.
	s.set(MethodRequestAddress, 200, `{"Data":{}}`)
	if _, err := c.RequestAddress(ctx, &RequestAddressRequest{PoolID: "p"}); !errors.Is(err, ErrNoAddress) || err.Error() != "no address returned" {
		t.Fatalf("no Address: err = %v", err)
	}
	s.set(MethodRequestAddress, 200, `{"Address":"10.0.0.2"}`)
	if _, err := c.RequestAddress(ctx, &RequestAddressRequest{PoolID: "p"}); err == nil || err.Error() != "invalid CIDR address: 10.0.0.2" {
		t.Fatalf("bare Address: err = %v", err)
	}
	s.set(MethodRequestAddress, 200, `{"Address":"10.0.0.2/24","Data":{"k":"v"}}`)
	if a, err := c.RequestAddress(ctx, &RequestAddressRequest{PoolID: "p"}); err != nil || a.Data["k"] != "v" {
		t.Fatalf("RequestAddress = %+v, %v", a, err)
	}

	// GetCapabilities: on any error, zero capabilities plus the error.
	for _, a := range []rawAnswer{{404, "404 page not found"}, {500, `{"Err":"x"}`}, {200, `{"Error":"x"}`}, {200, ``}, {200, `nope`}} {
		s.set(MethodGetCapabilities, a.status, a.body)
		caps, err := c.GetCapabilities(ctx)
		if err == nil || caps == nil || *caps != (CapabilitiesResponse{}) {
			t.Fatalf("GetCapabilities on %v = %+v, %v; want zero caps and an error", a, caps, err)
		}
	}
	s.set(MethodGetCapabilities, 200, `{"RequiresRequestReplay":true}`)
	if caps, err := c.GetCapabilities(ctx); err != nil || !caps.RequiresRequestReplay {
		t.Fatalf("GetCapabilities = %+v, %v", caps, err)
	}
}

// The Client sends what the daemon sends: empty bodies for the arg-less
// calls (G19), all keys with Go field names, null Options.
func TestClientRequestBodies(t *testing.T) {
	ctx := context.Background()
	s, c := startRaw(t)
	s.set(MethodGetCapabilities, 200, `{}`)
	s.set(MethodGetDefaultAddressSpaces, 200, `{}`)
	s.set(MethodRequestPool, 200, `{"PoolID":"p","Pool":"10.0.0.0/8"}`)
	s.set(MethodRequestAddress, 200, `{"Address":"10.0.0.2/8"}`)
	s.set(MethodReleasePool, 200, `{}`)
	s.set(MethodReleaseAddress, 200, `{}`)
	c.GetCapabilities(ctx)
	c.GetDefaultAddressSpaces(ctx)
	c.RequestPool(ctx, &RequestPoolRequest{AddressSpace: "local", V6: true})
	c.RequestAddress(ctx, &RequestAddressRequest{PoolID: "p"})
	c.ReleasePool(ctx, &ReleasePoolRequest{PoolID: "p"})
	c.ReleaseAddress(ctx, &ReleaseAddressRequest{PoolID: "p", Address: "10.0.0.2"})
	for m, want := range map[string]string{
		MethodGetCapabilities:         ``,
		MethodGetDefaultAddressSpaces: ``,
		MethodRequestPool:             `{"AddressSpace":"local","Pool":"","SubPool":"","Options":null,"V6":true}` + "\n",
		MethodRequestAddress:          `{"PoolID":"p","Address":"","Options":null}` + "\n",
		MethodReleasePool:             `{"PoolID":"p"}` + "\n",
		MethodReleaseAddress:          `{"PoolID":"p","Address":"10.0.0.2"}` + "\n",
	} {
		if got := string(s.body(m)); got != want {
			t.Errorf("%s body = %q, want %q", m, got, want)
		}
	}
}
