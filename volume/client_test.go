package volume

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

// rawPlugin is a hand-written plugin on a unix socket that answers each
// method with a fixed status and body, to reach the answers our Handler
// never gives (200 with Err, non-JSON errors, bad CreatedAt, ...). It
// records the request bodies it got.
type rawPlugin struct {
	mu      sync.Mutex
	answers map[string]rawAnswer
	got     map[string]string
}

type rawAnswer struct {
	status int
	body   string
}

func serveRaw(t *testing.T) (*rawPlugin, *Client) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "vr")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "raw.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPlugin{answers: map[string]rawAnswer{}, got: map[string]string{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		method := strings.TrimPrefix(r.URL.Path, "/")
		p.mu.Lock()
		p.got[method] = string(body)
		a, ok := p.answers[method]
		p.mu.Unlock()
		if !ok {
			a = rawAnswer{http.StatusOK, "{}"}
		}
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		os.RemoveAll(dir)
	})
	pc, err := plugin.NewClient("unix://"+sock, plugin.WithBackoff(plugintest.TestBackoff))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	return p, NewClient(pc)
}

func (p *rawPlugin) answer(method string, status int, body string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers[method] = rawAnswer{status, body}
}

func (p *rawPlugin) request(method string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got[method]
}

// TestRequestsAsDaemonSendsThem: the Client's bodies are byte for byte
// what dockerd's json.Encoder of its untagged request structs produces.
func TestRequestsAsDaemonSendsThem(t *testing.T) {
	p, c := serveRaw(t)
	ctx := context.Background()
	c.Create(ctx, &CreateRequest{Name: "v"})
	c.Remove(ctx, &RemoveRequest{Name: "v"})
	c.Mount(ctx, &MountRequest{Name: "v", ID: "abc"})
	c.Unmount(ctx, &UnmountRequest{Name: "v", ID: "abc"})
	c.Path(ctx, &PathRequest{Name: "v"})
	c.Get(ctx, &GetRequest{Name: "v"})
	c.List(ctx)
	c.Capabilities(ctx)
	want := map[string]string{
		MethodCreate:       `{"Name":"v","Opts":null}` + "\n",
		MethodRemove:       `{"Name":"v"}` + "\n",
		MethodMount:        `{"Name":"v","ID":"abc"}` + "\n",
		MethodUnmount:      `{"Name":"v","ID":"abc"}` + "\n",
		MethodPath:         `{"Name":"v"}` + "\n",
		MethodGet:          `{"Name":"v"}` + "\n",
		MethodList:         "{}\n",
		MethodCapabilities: "{}\n",
	}
	for m, w := range want {
		if got := p.request(m); got != w {
			t.Errorf("%s sent %q, want %q", m, got, w)
		}
	}
	c.Create(ctx, &CreateRequest{Name: "v", Opts: map[string]string{"o": "1"}})
	if got := p.request(MethodCreate); got != `{"Name":"v","Opts":{"o":"1"}}`+"\n" {
		t.Errorf("Create with Opts sent %q", got)
	}
}

// Test200WithErr: a 200 whose body carries a non-empty "Err" is an error,
// errors.New(Err) verbatim (no method prefix, no StatusError), and it wins
// over the other fields of the answer.
func Test200WithErr(t *testing.T) {
	p, c := serveRaw(t)
	bodies := map[string]string{
		MethodCreate:       `{"Err":"boom"}`,
		MethodRemove:       `{"Err":"boom"}`,
		MethodMount:        `{"Mountpoint":"/m","Err":"boom"}`,
		MethodUnmount:      `{"err":"boom"}`, // keys are case-insensitive
		MethodPath:         `{"Mountpoint":"/m","Err":"boom"}`,
		MethodGet:          `{"Volume":{"Name":"v"},"Err":"boom"}`,
		MethodList:         `{"Volumes":[{"Name":"v"}],"Err":"boom"}`,
		MethodCapabilities: `{"Capabilities":{"Scope":"global"},"Err":"boom"}`,
	}
	for m, b := range bodies {
		p.answer(m, http.StatusOK, b)
	}
	for _, tc := range allCalls {
		err := tc.call(c)
		if err == nil || err.Error() != "boom" {
			t.Errorf("%s: err = %v, want exactly \"boom\"", tc.method, err)
			continue
		}
		var se *plugin.StatusError
		if errors.As(err, &se) {
			t.Errorf("%s: a 200 with Err became a StatusError", tc.method)
		}
	}
	caps, _ := c.Capabilities(context.Background())
	if caps == nil || caps.Capabilities.Scope != ScopeLocal {
		t.Errorf("Capabilities with Err = %+v, want local", caps)
	}
	_, err := c.Get(context.Background(), &GetRequest{Name: "v"})
	if !IsNoSuchVolume(err) {
		t.Errorf("Get with Err: IsNoSuchVolume = false (G2)")
	}
}

// TestNon200: the message is "Err" if the body is JSON with a non-empty
// Err, else the raw body; the status is kept.
func TestNon200(t *testing.T) {
	p, c := serveRaw(t)
	ctx := context.Background()
	p.answer(MethodMount, http.StatusInternalServerError, `{"Err":"no disk"}`)
	_, err := c.Mount(ctx, &MountRequest{Name: "v", ID: "i"})
	wantStatus(t, err, 500, "VolumeDriver.Mount: no disk")

	p.answer(MethodRemove, http.StatusBadGateway, "upstream said no\n")
	wantStatus(t, c.Remove(ctx, &RemoveRequest{Name: "v"}), 502, "VolumeDriver.Remove: upstream said no\n")

	// An "Error" key is not "Err": the raw body shows.
	p.answer(MethodCreate, http.StatusInternalServerError, `{"Error":"x"}`)
	wantStatus(t, c.Create(ctx, &CreateRequest{Name: "v"}), 500, `VolumeDriver.Create: {"Error":"x"}`)

	// Capabilities: any error, 404 included, still means local.
	p.answer(MethodCapabilities, http.StatusNotFound, "404 page not found")
	caps, err := c.Capabilities(ctx)
	if !plugin.IsNotFound(err) || caps.Capabilities.Scope != ScopeLocal {
		t.Errorf("Capabilities 404 = %+v, %v", caps, err)
	}
}

// TestEmpty200: G19. An empty 200 body is an error for every method.
func TestEmpty200(t *testing.T) {
	p, c := serveRaw(t)
	for _, tc := range allCalls {
		p.answer(tc.method, http.StatusOK, "")
	}
	for _, tc := range allCalls {
		err := tc.call(c)
		if err == nil || !strings.Contains(err.Error(), "empty response body") {
			t.Errorf("%s with an empty 200: err = %v", tc.method, err)
		}
	}
}

// TestGetAnswers: a null or missing Volume is ErrNoSuchVolume (G2).
func TestGetAnswers(t *testing.T) {
	p, c := serveRaw(t)
	for _, body := range []string{`{}`, `{"Volume":null}`, `null`, `{"Volume":null,"Err":""}`} {
		p.answer(MethodGet, http.StatusOK, body)
		if _, err := c.Get(context.Background(), &GetRequest{Name: "v"}); !errors.Is(err, ErrNoSuchVolume) || err.Error() != "no such volume" {
			t.Errorf("Get %s: err = %v, want ErrNoSuchVolume", body, err)
		}
	}
	p.answer(MethodGet, http.StatusOK, `{"volume":{"name":"v","mountpoint":"/m","createdat":"2024-05-06T07:08:09.123+02:00","status":{"a":[1]}},"extra":1}`)
	g, err := c.Get(context.Background(), &GetRequest{Name: "v"})
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2024, 5, 6, 5, 8, 9, 123e6, time.UTC)
	if g.Volume.Name != "v" || g.Volume.Mountpoint != "/m" || !g.Volume.CreatedAt.Equal(want) || g.Volume.Status["a"] == nil {
		t.Errorf("Get = %+v", g.Volume)
	}
}

// TestCreatedAtMustBeRFC3339: the daemon decodes CreatedAt into a
// time.Time, so any other format fails the whole Get or List answer, like
// here. For Get that also means "no such volume" to the daemon (G2).
func TestCreatedAtMustBeRFC3339(t *testing.T) {
	p, c := serveRaw(t)
	ctx := context.Background()
	bad := []string{`"2024-01-02 03:04:05"`, `"2024-01-02"`, `1704164645`, `"Tue, 02 Jan 2024 03:04:05 UTC"`, `""`, `"2024-01-02T03:04:05"`}
	for _, ts := range bad {
		p.answer(MethodGet, http.StatusOK, `{"Volume":{"Name":"v","CreatedAt":`+ts+`}}`)
		_, err := c.Get(ctx, &GetRequest{Name: "v"})
		if err == nil {
			t.Errorf("Get with CreatedAt %s decoded", ts)
		} else if !IsNoSuchVolume(err) {
			t.Errorf("Get with CreatedAt %s: the daemon would treat %v as no such volume", ts, err)
		}
		p.answer(MethodList, http.StatusOK, `{"Volumes":[{"Name":"ok"},{"Name":"v","CreatedAt":`+ts+`}]}`)
		if _, err := c.List(ctx); err == nil {
			t.Errorf("List with CreatedAt %s decoded", ts)
		}
	}
	for _, ts := range []string{`"2024-01-02T03:04:05Z"`, `"2024-01-02T03:04:05.999999999-07:00"`, `null`} {
		p.answer(MethodGet, http.StatusOK, `{"Volume":{"Name":"v","CreatedAt":`+ts+`}}`)
		if _, err := c.Get(ctx, &GetRequest{Name: "v"}); err != nil {
			t.Errorf("Get with CreatedAt %s: %v", ts, err)
		}
	}
}

// TestVolumeEncoding: what a driver's Volume looks like on the wire.
func TestVolumeEncoding(t *testing.T) {
	cases := []struct {
		v    Volume
		want string
	}{
		{Volume{Name: "v"}, `{"Name":"v"}`},
		{Volume{Name: "v", Mountpoint: "/m", CreatedAt: time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC), Status: map[string]any{"k": "x"}},
			`{"Name":"v","Mountpoint":"/m","CreatedAt":"2024-01-02T03:04:05.000000006Z","Status":{"k":"x"}}`},
		{Volume{Name: "v", CreatedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("", -5*3600))}, `{"Name":"v","CreatedAt":"2024-01-02T03:04:05-05:00"}`},
	}
	for _, tc := range cases {
		got, err := json.Marshal(tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", tc.v, got, err, tc.want)
		}
		if _, err := time.Parse(time.RFC3339, tc.v.CreatedAt.Format(time.RFC3339Nano)); err != nil {
			t.Error(err)
		}
	}
	// Request and response keys are the daemon's Go field names.
	for _, tc := range []struct {
		v    any
		want string
	}{
		{CreateRequest{Name: "n"}, `{"Name":"n","Opts":null}`},
		{MountRequest{Name: "n", ID: "i"}, `{"Name":"n","ID":"i"}`},
		{UnmountRequest{Name: "n", ID: "i"}, `{"Name":"n","ID":"i"}`},
		{MountResponse{Mountpoint: "/m"}, `{"Mountpoint":"/m"}`},
		{PathResponse{Mountpoint: "/m"}, `{"Mountpoint":"/m"}`},
		{GetResponse{}, `{"Volume":null}`},
		{ListResponse{Volumes: []*Volume{}}, `{"Volumes":[]}`},
		{CapabilitiesResponse{Capabilities: Capability{Scope: ScopeGlobal}}, `{"Capabilities":{"Scope":"global"}}`},
	} {
		if got, _ := json.Marshal(tc.v); string(got) != tc.want {
			t.Errorf("Marshal(%T) = %s, want %s", tc.v, got, tc.want)
		}
	}
	// A time the daemon could not parse back cannot be sent: the Handler
	// answers 500 rather than an undecodable 200.
	if _, err := json.Marshal(Volume{Name: "v", CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("year 10000 encoded")
	}
}

// TestListAnswers: a null entry would crash dockerd; the Client refuses it.
func TestListAnswers(t *testing.T) {
	p, c := serveRaw(t)
	ctx := context.Background()
	p.answer(MethodList, http.StatusOK, `{"Volumes":[{"Name":"a"},null]}`)
	if _, err := c.List(ctx); err == nil || !strings.Contains(err.Error(), "volume 1 is null") {
		t.Errorf("List with a null entry: err = %v", err)
	}
	for _, body := range []string{`{}`, `{"Volumes":null}`, `{"Volumes":[]}`} {
		p.answer(MethodList, http.StatusOK, body)
		if l, err := c.List(ctx); err != nil || len(l.Volumes) != 0 {
			t.Errorf("List %s = %+v, %v", body, l, err)
		}
	}
	p.answer(MethodList, http.StatusOK, `{"Volumes":{"Name":"a"}}`)
	if _, err := c.List(ctx); err == nil {
		t.Error("List with an object for Volumes decoded")
	}
}

// TestCapabilitiesAnswers: the daemon's scope rules.
func TestCapabilitiesAnswers(t *testing.T) {
	p, c := serveRaw(t)
	cases := []struct {
		body, scope string
		invalid     bool
	}{
		{`{}`, ScopeLocal, false},
		{`{"Capabilities":{}}`, ScopeLocal, false},
		{`{"Capabilities":{"Scope":"local"}}`, ScopeLocal, false},
		{`{"Capabilities":{"Scope":"global"}}`, ScopeGlobal, false},
		{`{"Capabilities":{"Scope":"GLOBAL"}}`, ScopeGlobal, false},
		{`{"capabilities":{"scope":"Global"}}`, ScopeGlobal, false},
		{`{"Capabilities":{"Scope":"cluster"}}`, ScopeLocal, true},
	}
	for _, tc := range cases {
		p.answer(MethodCapabilities, http.StatusOK, tc.body)
		caps, err := c.Capabilities(context.Background())
		if caps == nil || caps.Capabilities.Scope != tc.scope {
			t.Errorf("%s: scope = %+v, want %s", tc.body, caps, tc.scope)
		}
		if got := errors.Is(err, ErrInvalidScope); got != tc.invalid || (err != nil && !tc.invalid) {
			t.Errorf("%s: err = %v", tc.body, err)
		}
	}
	p.answer(MethodCapabilities, http.StatusOK, `{"Capabilities":"global"}`)
	if caps, err := c.Capabilities(context.Background()); err == nil || caps.Capabilities.Scope != ScopeLocal {
		t.Errorf("undecodable Capabilities = %+v, %v; want local and an error", caps, err)
	}
}
