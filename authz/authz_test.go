package authz

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

// fakePlugin records requests and answers from its fields.
type fakePlugin struct {
	mu       sync.Mutex
	calls    []string
	last     *Request
	resp     *Response
	err      error
	panicMsg string
}

func (f *fakePlugin) decide(name string, req *Request) (*Response, error) {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	f.last = req
	resp, err, p := f.resp, f.err, f.panicMsg
	f.mu.Unlock()
	if p != "" {
		panic(p)
	}
	return resp, err
}

func (f *fakePlugin) AuthZReq(_ context.Context, req *Request) (*Response, error) {
	return f.decide("AuthZReq", req)
}

func (f *fakePlugin) AuthZRes(_ context.Context, req *Request) (*Response, error) {
	return f.decide("AuthZRes", req)
}

func (f *fakePlugin) set(resp *Response, err error, panicMsg string) {
	f.mu.Lock()
	f.resp, f.err, f.panicMsg = resp, err, panicMsg
	f.mu.Unlock()
}

func (f *fakePlugin) lastReq() *Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fakePlugin) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func serve(t *testing.T, p Plugin) (*plugintest.Running, *Client) {
	t.Helper()
	r := plugintest.Serve(t, "authztest", NewHandler(p))
	return r, NewClient(r.Client)
}

// selfSigned makes a throwaway client certificate with CN cn.
func selfSigned(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fullRequest(t testing.TB) *Request {
	return &Request{
		User:                    "alice",
		UserAuthNMethod:         "TLS",
		RequestMethod:           "POST",
		RequestURI:              "/v1.47/containers/create?name=web",
		RequestBody:             []byte(`{"Image":"busybox","Cmd":["sh"]}` + "\x00\xff"),
		RequestHeaders:          map[string]string{"Content-Type": "application/json", "User-Agent": "Docker-Client/27"},
		RequestPeerCertificates: []PeerCertificate{{selfSigned(t, "alice")}},
		ResponseStatusCode:      201,
		ResponseBody:            []byte(`{"Id":"abc"}`),
		ResponseHeaders:         map[string]string{"Api-Version": "1.47"},
	}
}

func TestActivateImplementsLowercaseAuthz(t *testing.T) {
	r, _ := serve(t, &fakePlugin{})
	m, err := r.Client.Activate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// G20: "authz" is lowercase, compared case-sensitively.
	if !m.Has("authz") || m.Has("Authz") || len(m.Implements) != 1 {
		t.Fatalf("Implements = %v, want [authz]", m.Implements)
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	f := &fakePlugin{resp: Allow()}
	_, c := serve(t, f)
	req := fullRequest(t)

	res, err := c.AuthZReq(ctx, req)
	if err != nil || !res.Allow || Verdict("p", res, err) != nil {
		t.Fatalf("AuthZReq = %+v, %v", res, err)
	}
	got := f.lastReq()
	if !got.RequestPeerCertificates[0].Equal(req.RequestPeerCertificates[0].Certificate) {
		t.Fatal("peer certificate changed on the way")
	}
	got.RequestPeerCertificates, req.RequestPeerCertificates = nil, nil
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("plugin got %+v\nwant %+v", got, req)
	}

	f.set(Deny("no privileged containers"), nil, "")
	res, err = c.AuthZRes(ctx, &Request{RequestMethod: "GET", RequestURI: "/_ping"})
	if err != nil || res.Allow || res.Msg != "no privileged containers" {
		t.Fatalf("AuthZRes = %+v, %v", res, err)
	}
	v := Verdict("authz-plugin:latest", res, err)
	var de *DeniedError
	if !errors.As(v, &de) || de.HTTPStatus() != 403 ||
		v.Error() != "authorization denied by plugin authz-plugin:latest: no privileged containers" {
		t.Fatalf("Verdict = %v", v)
	}
	if got := f.called(); !reflect.DeepEqual(got, []string{"AuthZReq", "AuthZRes"}) {
		t.Fatalf("calls = %v", got)
	}
}

// G14: the keys are RequestUri and RequestHeaders (the docs say RequestURI
// and RequestHeader), bodies are base64, certificates base64 of PEM.
func TestWireKeysG14(t *testing.T) {
	req := fullRequest(t)
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"User", "UserAuthNMethod", "RequestMethod", "RequestUri", "RequestBody", "RequestHeaders",
		"RequestPeerCertificates", "ResponseStatusCode", "ResponseBody", "ResponseHeaders"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %s missing from %s", k, b)
		}
		delete(m, k)
	}
	for k := range m {
		t.Errorf("unexpected key %s", k)
	}
	if bytes.Contains(b, []byte(`"RequestURI"`)) || bytes.Contains(b, []byte(`"RequestHeader"`)) {
		t.Errorf("docs-only key names in %s", b)
	}
	// RequestBody is a base64 string of the raw bytes.
	var body string
	json.Unmarshal(mustField(t, b, "RequestBody"), &body)
	if dec, _ := base64.StdEncoding.DecodeString(body); !bytes.Equal(dec, req.RequestBody) {
		t.Errorf("RequestBody on the wire = %q, want base64 of %q", body, req.RequestBody)
	}
	// Empty fields are omitted, Allow never is.
	if b, _ := json.Marshal(&Request{}); string(b) != "{}" {
		t.Errorf("empty request = %s", b)
	}
	if b, _ := json.Marshal(Deny("")); string(b) != `{"Allow":false}` {
		t.Errorf("deny = %s", b)
	}
}

func mustField(t *testing.T, b []byte, key string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || m[key] == nil {
		t.Fatalf("no %s in %s", key, b)
	}
	return m[key]
}

func TestPeerCertificateRoundTrip(t *testing.T) {
	cert := selfSigned(t, "bob")
	b, err := json.Marshal([]PeerCertificate{{cert}})
	if err != nil {
		t.Fatal(err)
	}
	// The element is a JSON string: base64 of the PEM text.
	var strs []string
	if err := json.Unmarshal(b, &strs); err != nil || len(strs) != 1 {
		t.Fatalf("encoded %s: %v", b, err)
	}
	pemText, err := base64.StdEncoding.DecodeString(strs[0])
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(pemText)
	if block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, cert.Raw) || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("wire value is not the certificate's PEM: %q", pemText)
	}
	var back []PeerCertificate
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != 1 || !back[0].Equal(cert) || back[0].Subject.CommonName != "bob" {
		t.Fatalf("decoded %+v", back)
	}

	// A value (not pointer) encodes the same, a missing certificate fails.
	if b2, err := json.Marshal(PeerCertificate{cert}); err != nil || string(b2) != `"`+strs[0]+`"` {
		t.Fatalf("value encoding %s, %v", b2, err)
	}
	if _, err := json.Marshal(PeerCertificate{}); err == nil {
		t.Fatal("empty PeerCertificate encoded")
	}
	// Bad values are errors, never panics (the daemon's decoder panics on a
	// missing PEM block).
	for _, bad := range []string{`null`, `"bm90IHBlbQ=="`, `"!!"`, `42`,
		`"` + base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})) + `"`} {
		var pc PeerCertificate
		if err := json.Unmarshal([]byte(bad), &pc); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
}

// A request exactly as dockerd encodes it decodes into the right fields.
func TestDecodeDaemonRequest(t *testing.T) {
	cert := selfSigned(t, "carol")
	certJSON, _ := json.Marshal(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	body := `{"User":"carol","UserAuthNMethod":"TLS","RequestMethod":"DELETE","RequestUri":"/containers/x?force=1",` +
		`"RequestBody":"e30=","RequestHeaders":{"Accept":"*/*"},"RequestPeerCertificates":[` + string(certJSON) + `],` +
		`"ResponseStatusCode":204,"ResponseBody":"bnVsbA==","ResponseHeaders":{"Server":"Docker"}}` + "\n"
	var req Request
	if err := plugin.Decode([]byte(body), &req); err != nil {
		t.Fatal(err)
	}
	if req.RequestURI != "/containers/x?force=1" || string(req.RequestBody) != "{}" || req.RequestHeaders["Accept"] != "*/*" ||
		req.ResponseStatusCode != 204 || string(req.ResponseBody) != "null" || req.ResponseHeaders["Server"] != "Docker" ||
		len(req.RequestPeerCertificates) != 1 || req.RequestPeerCertificates[0].Subject.CommonName != "carol" {
		t.Fatalf("decoded %+v", req)
	}
}

// G14: the daemon sends JSON bodies of up to 4 MiB (base64: ~5.6 MB); the
// server must take them.
func TestLargeBodyG14(t *testing.T) {
	f := &fakePlugin{resp: Allow()}
	_, c := serve(t, f)
	big := bytes.Repeat([]byte(`{"a":1}`), 4<<20/7)
	if _, err := c.AuthZReq(context.Background(), &Request{RequestMethod: "POST", RequestURI: "/build", RequestBody: big}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.lastReq().RequestBody, big) {
		t.Fatal("large body changed")
	}
}

func wantStatus(t *testing.T, err error, status int, text string) {
	t.Helper()
	var se *plugin.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want *plugin.StatusError %d", err, err, status)
	}
	if se.Status != status || (text != "" && err.Error() != text) {
		t.Fatalf("err = %d %q, want %d %q", se.Status, err.Error(), status, text)
	}
}

func TestPluginErrorsFailClosed(t *testing.T) {
	ctx := context.Background()
	f := &fakePlugin{}
	_, c := serve(t, f)
	req := &Request{RequestMethod: "GET", RequestURI: "/info"}
	for _, tc := range []struct {
		resp   *Response
		err    error
		status int
		msg    string
	}{
		{nil, errors.New("policy store down"), 500, "policy store down"},
		{nil, plugin.Errorf(503, "reloading"), 503, "reloading"},
		{nil, nil, 500, "authorization plugin returned no decision"},
		// Allow + Err on a 200 would let the request through (the daemon
		// ignores Err): the Handler answers it as a failure instead.
		{&Response{Allow: true, Err: "half-evaluated"}, nil, 500, "half-evaluated"},
		{&Response{Err: "broken"}, nil, 500, "broken"},
	} {
		f.set(tc.resp, tc.err, "")
		for _, m := range []string{MethodAuthZReq, MethodAuthZRes} {
			var res *Response
			var err error
			if m == MethodAuthZReq {
				res, err = c.AuthZReq(ctx, req)
			} else {
				res, err = c.AuthZRes(ctx, req)
			}
			if res != nil {
				t.Fatalf("%s: got a decision %+v with %v", m, res, err)
			}
			wantStatus(t, err, tc.status, m+": "+tc.msg)
			v := Verdict("pol", res, err)
			var fe *FailedError
			if !errors.As(v, &fe) || fe.HTTPStatus() != 500 || v.Error() != "plugin pol failed with error: "+m+": "+tc.msg {
				t.Fatalf("Verdict = %v", v)
			}
		}
	}
}

func TestRequestValidation(t *testing.T) {
	f := &fakePlugin{resp: Allow()}
	r, _ := serve(t, f)
	cert := selfSigned(t, "x")
	goodCert, _ := json.Marshal(PeerCertificate{cert})
	for _, tc := range []struct{ body, want string }{
		{``, "RequestMethod is required"},
		{`{}`, "RequestMethod is required"},
		{`{"RequestMethod":"GET"}`, "RequestUri is required"},
		{`{"RequestMethod":"GET","RequestURI":"/x"}`, ""}, // case-insensitive key: accepted
		{`{"RequestMethod":"GET","RequestUri":"/x","RequestBody":"not base64!"}`, "decode request"},
		{`{"RequestMethod":"GET","RequestUri":"/x","RequestPeerCertificates":["bm90IHBlbQ=="]}`, "no PEM block"},
		{`{"RequestMethod":"GET","RequestUri":"/x","RequestPeerCertificates":[null]}`, "no PEM block"},
		{`{"RequestMethod":"GET","RequestUri":"/x","RequestPeerCertificates":[` + string(goodCert) + `]}`, ""},
		{`{"RequestMethod":"GET","RequestUri":"/x","RequestHeaders":{"A":["b"]}}`, "decode request"},
		{`{"RequestMethod":`, "decode request"},
	} {
		for _, m := range []string{MethodAuthZReq, MethodAuthZRes} {
			status, msg := post(t, r, m, tc.body)
			if tc.want == "" {
				if status != 200 {
					t.Errorf("%s %s: %d %s", m, tc.body, status, msg)
				}
				continue
			}
			if status != 400 || !strings.Contains(msg, tc.want) {
				t.Errorf("%s %s: %d %q, want 400 and %q", m, tc.body, status, msg, tc.want)
			}
		}
	}
	if n := len(f.called()); n != 4 {
		t.Fatalf("%d calls reached the plugin, want 4 (the valid ones)", n)
	}
}

func TestPanickingPlugin(t *testing.T) {
	ctx := context.Background()
	f := &fakePlugin{}
	_, c := serve(t, f)
	req := &Request{RequestMethod: "GET", RequestURI: "/info"}
	f.set(nil, nil, "nil map")
	_, err := c.AuthZReq(ctx, req)
	wantStatus(t, err, 500, "")
	if !strings.Contains(err.Error(), "nil map") {
		t.Fatalf("err = %v", err)
	}
	f.set(Allow(), nil, "")
	if res, err := c.AuthZReq(ctx, req); err != nil || !res.Allow {
		t.Fatalf("server did not survive the panic: %+v, %v", res, err)
	}
}

// post sends body as is and returns the status and "Err" of the answer.
func post(t *testing.T, r *plugintest.Running, method, body string) (int, string) {
	t.Helper()
	hc := unixHTTP(strings.TrimPrefix(r.Server.Addr(), "unix://"))
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

func unixHTTP(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
}

// rawPlugin answers with a canned status and body and records what it got:
// a plugin doing what ours never does, to check the Client.
type rawPlugin struct {
	mu     sync.Mutex
	status int
	body   string
	got    []byte
}

func (s *rawPlugin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.got = b
	status, body := s.status, s.body
	s.mu.Unlock()
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (s *rawPlugin) set(status int, body string) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

func startRaw(t *testing.T) (*rawPlugin, *Client) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "authzraw")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "raw.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &rawPlugin{status: 200, body: "{}"}
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

// On a 200 the daemon ignores Err: only Allow and Msg count.
func TestClientErrIgnoredOn200(t *testing.T) {
	ctx := context.Background()
	s, c := startRaw(t)
	req := &Request{RequestMethod: "GET", RequestURI: "/info"}

	s.set(200, `{"Allow":true,"Err":"something broke"}`)
	res, err := c.AuthZReq(ctx, req)
	if err != nil || !res.Allow || res.Err != "something broke" {
		t.Fatalf("AuthZReq = %+v, %v; want allowed, Err kept only for diagnostics", res, err)
	}
	if v := Verdict("p", res, err); v != nil {
		t.Fatalf("Verdict = %v, want nil: the daemon lets this request through", v)
	}

	s.set(200, `{"Allow":false,"Msg":"read-only user","Err":"ignored"}`)
	res, err = c.AuthZRes(ctx, req)
	if v := Verdict("p", res, err); v == nil || v.Error() != "authorization denied by plugin p: read-only user" {
		t.Fatalf("Verdict = %v", v)
	}
	// {} is a deny with an empty message.
	s.set(200, `{}`)
	res, err = c.AuthZReq(ctx, req)
	if v := Verdict("p", res, err); v == nil || v.Error() != "authorization denied by plugin p: " {
		t.Fatalf("Verdict = %v", v)
	}
	// Case-insensitive keys, unknown keys ignored.
	s.set(200, `{"allow":true,"msg":"ok","Extra":[1]}`)
	if res, err := c.AuthZReq(ctx, req); err != nil || !res.Allow || res.Msg != "ok" {
		t.Fatalf("AuthZReq = %+v, %v", res, err)
	}
}

func TestClientFailures(t *testing.T) {
	ctx := context.Background()
	s, c := startRaw(t)
	req := &Request{RequestMethod: "GET", RequestURI: "/info"}
	for _, tc := range []struct {
		status     int
		body, want string
	}{
		{500, `{"Err":"policy error"}`, "plugin p failed with error: AuthZPlugin.AuthZReq: policy error"},
		{500, `{"Allow":true}`, `plugin p failed with error: AuthZPlugin.AuthZReq: {"Allow":true}`},
		{404, "404 page not found\n", "plugin p failed with error: AuthZPlugin.AuthZReq: 404 page not found\n"}, // raw body, as the daemon
	} {
		s.set(tc.status, tc.body)
		res, err := c.AuthZReq(ctx, req)
		wantStatus(t, err, tc.status, "")
		if v := Verdict("p", res, err); v == nil || v.Error() != tc.want {
			t.Errorf("%d %s: Verdict = %v, want %q", tc.status, tc.body, v, tc.want)
		}
	}
	// G19: an empty 200 body, or bad JSON, is a failure, not a decision.
	for _, body := range []string{``, `Allow`} {
		s.set(200, body)
		res, err := c.AuthZReq(ctx, req)
		var fe *FailedError
		if v := Verdict("p", res, err); err == nil || !errors.As(v, &fe) {
			t.Errorf("200 %q: %+v, %v", body, res, err)
		}
	}
}

// The Client sends the daemon's keys.
func TestClientRequestBody(t *testing.T) {
	s, c := startRaw(t)
	s.set(200, `{"Allow":true}`)
	req := &Request{RequestMethod: "GET", RequestURI: "/v1.47/info", RequestHeaders: map[string]string{"Accept": "*/*"}, RequestBody: []byte("{}")}
	if _, err := c.AuthZReq(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	got := string(s.got)
	s.mu.Unlock()
	want := `{"RequestMethod":"GET","RequestUri":"/v1.47/info","RequestBody":"e30=","RequestHeaders":{"Accept":"*/*"}}` + "\n"
	if got != want {
		t.Fatalf("body = %q, want %q", got, want)
	}
}
