package volume

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

// serve runs d behind a Handler on a real unix socket.
func serve(t *testing.T, d Driver) (*plugintest.Running, *Client) {
	t.Helper()
	r := plugintest.Serve(t, "voltest", NewHandler(d))
	return r, NewClient(r.Client)
}

// postRaw sends body as-is, the way the daemon would (no Content-Type), and
// returns the status and the answer.
func postRaw(t *testing.T, r *plugintest.Running, method, body string) (int, []byte) {
	t.Helper()
	path := strings.TrimPrefix(r.Server.Addr(), "unix://")
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, "http://plugin.moby.localhost/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", plugin.MediaType)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", method, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func errBody(t *testing.T, body []byte) string {
	t.Helper()
	var e struct{ Err string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error answer %q is not JSON: %v", body, err)
	}
	return e.Err
}

func wantStatus(t *testing.T, err error, status int, text string) {
	t.Helper()
	var se *plugin.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want *plugin.StatusError", err, err)
	}
	if se.Status != status {
		t.Errorf("status = %d, want %d (%v)", se.Status, status, err)
	}
	if text != "" && err.Error() != text {
		t.Errorf("err = %q, want %q", err.Error(), text)
	}
}

func TestActivate(t *testing.T) {
	r, _ := serve(t, newMemDriver())
	m, err := r.Client.Activate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !m.Has("VolumeDriver") {
		t.Fatalf("Implements = %v, want VolumeDriver (G20)", m.Implements)
	}
}

// TestLifecycle drives every method through the happy path, in the order
// the daemon uses them: Get gates Create (G2), Get before Mount/Unmount.
func TestLifecycle(t *testing.T) {
	d := newMemDriver()
	_, c := serve(t, d)
	ctx := context.Background()

	caps, err := c.Capabilities(ctx)
	if err != nil || caps.Capabilities.Scope != ScopeGlobal {
		t.Fatalf("Capabilities = %+v, %v; want global", caps, err)
	}

	if _, err := c.Get(ctx, &GetRequest{Name: "data"}); !errors.Is(err, ErrNoSuchVolume) || !IsNoSuchVolume(err) {
		t.Fatalf("Get before Create: err = %v, want ErrNoSuchVolume", err)
	}
	if err := c.Create(ctx, &CreateRequest{Name: "data", Opts: map[string]string{"size": "1G"}}); err != nil {
		t.Fatal(err)
	}
	d.with(func() {
		if got := d.opts["data"]; got["size"] != "1G" || len(got) != 1 {
			t.Errorf("driver got Opts %v", got)
		}
	})
	// No -o: the daemon sends "Opts": null; the driver gets an empty map.
	if err := c.Create(ctx, &CreateRequest{Name: "bare"}); err != nil {
		t.Fatal(err)
	}
	d.with(func() {
		if got := d.opts["bare"]; got == nil || len(got) != 0 {
			t.Errorf("driver got Opts %#v, want empty non-nil map", got)
		}
	})

	g, err := c.Get(ctx, &GetRequest{Name: "data"})
	if err != nil {
		t.Fatal(err)
	}
	var want Volume
	d.with(func() { want = *d.vols["data"] })
	if g.Volume.Name != "data" || !g.Volume.CreatedAt.Equal(want.CreatedAt) || g.Volume.Mountpoint != "" {
		t.Errorf("Get = %+v, want %+v", g.Volume, want)
	}
	if g.Volume.Status["opts"] != float64(1) {
		t.Errorf("Status = %v", g.Volume.Status)
	}

	p, err := c.Path(ctx, &PathRequest{Name: "data"})
	if err != nil || p.Mountpoint != "" {
		t.Fatalf("Path before Mount = %+v, %v", p, err)
	}
	m, err := c.Mount(ctx, &MountRequest{Name: "data", ID: strings.Repeat("a", 64)})
	if err != nil || m.Mountpoint != "/mnt/data" {
		t.Fatalf("Mount = %+v, %v", m, err)
	}
	p, err = c.Path(ctx, &PathRequest{Name: "data"})
	if err != nil || p.Mountpoint != "/mnt/data" {
		t.Fatalf("Path after Mount = %+v, %v", p, err)
	}

	l, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Volumes) != 2 || l.Volumes[0].Name != "bare" || l.Volumes[1].Name != "data" || l.Volumes[1].Mountpoint != "/mnt/data" {
		t.Errorf("List = %+v", l.Volumes)
	}

	if err := c.Remove(ctx, &RemoveRequest{Name: "data"}); err == nil {
		t.Error("Remove of a mounted volume succeeded")
	} else {
		wantStatus(t, err, http.StatusConflict, "VolumeDriver.Remove: volume data is in use")
	}
	if err := c.Unmount(ctx, &UnmountRequest{Name: "data", ID: strings.Repeat("a", 64)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, &RemoveRequest{Name: "data"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, &GetRequest{Name: "data"}); !errors.Is(err, ErrNoSuchVolume) {
		t.Fatalf("Get after Remove: err = %v, want ErrNoSuchVolume", err)
	}
}

// TestMountIDRepeats: G1. The daemon reuses a mount ID for extra mounts
// while a container runs (docker cp) and sends one Unmount per Mount. The
// Handler must hand every call to the driver, repeats included.
func TestMountIDRepeats(t *testing.T) {
	d := newMemDriver()
	_, c := serve(t, d)
	ctx := context.Background()
	if err := c.Create(ctx, &CreateRequest{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	id1, id2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	for _, id := range []string{id1, id1, id2} {
		if _, err := c.Mount(ctx, &MountRequest{Name: "v", ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.count("v", id1); n != 2 {
		t.Fatalf("driver saw %d mounts with the repeated ID, want 2", n)
	}
	// First Unmount of id1 must leave the volume mounted for the other.
	if err := c.Unmount(ctx, &UnmountRequest{Name: "v", ID: id1}); err != nil {
		t.Fatal(err)
	}
	if n := d.count("v", id1); n != 1 {
		t.Fatalf("after one Unmount the count is %d, want 1", n)
	}
	if p, _ := c.Path(ctx, &PathRequest{Name: "v"}); p == nil || p.Mountpoint == "" {
		t.Fatal("volume unmounted while a mount with the same ID is still active")
	}
	for _, id := range []string{id1, id2} {
		if err := c.Unmount(ctx, &UnmountRequest{Name: "v", ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	var mounts, unmounts int
	for _, call := range d.callLog() {
		if call == "Mount v "+id1 {
			mounts++
		}
		if call == "Unmount v "+id1 {
			unmounts++
		}
	}
	if mounts != 2 || unmounts != 2 {
		t.Errorf("driver saw %d Mount and %d Unmount with the same ID, want 2 and 2: %v", mounts, unmounts, d.callLog())
	}
}

// every method, called through the Client with valid arguments.
var allCalls = []struct {
	method, driver string
	call           func(*Client) error
}{
	{MethodCreate, "Create", func(c *Client) error {
		return c.Create(context.Background(), &CreateRequest{Name: "v"})
	}},
	{MethodRemove, "Remove", func(c *Client) error {
		return c.Remove(context.Background(), &RemoveRequest{Name: "v"})
	}},
	{MethodMount, "Mount", func(c *Client) error {
		_, err := c.Mount(context.Background(), &MountRequest{Name: "v", ID: "id"})
		return err
	}},
	{MethodUnmount, "Unmount", func(c *Client) error {
		return c.Unmount(context.Background(), &UnmountRequest{Name: "v", ID: "id"})
	}},
	{MethodPath, "Path", func(c *Client) error {
		_, err := c.Path(context.Background(), &PathRequest{Name: "v"})
		return err
	}},
	{MethodGet, "Get", func(c *Client) error {
		_, err := c.Get(context.Background(), &GetRequest{Name: "v"})
		return err
	}},
	{MethodList, "List", func(c *Client) error {
		_, err := c.List(context.Background())
		return err
	}},
	{MethodCapabilities, "Capabilities", func(c *Client) error {
		_, err := c.Capabilities(context.Background())
		return err
	}},
}

// TestDriverErrors: a driver error is answered non-200 {"Err": msg} and
// surfaces as "<Method>: <msg>" with the status the driver chose.
func TestDriverErrors(t *testing.T) {
	d := newMemDriver()
	_, c := serve(t, d)
	for _, tc := range allCalls {
		d.mu.Lock()
		d.errs = map[string]error{tc.driver: errors.New("disk on fire")}
		d.mu.Unlock()
		wantStatus(t, tc.call(c), http.StatusInternalServerError, tc.method+": disk on fire")

		d.mu.Lock()
		d.errs = map[string]error{tc.driver: plugin.NotFound("nothing called %s", "v")}
		d.mu.Unlock()
		err := tc.call(c)
		wantStatus(t, err, http.StatusNotFound, tc.method+": nothing called v")
		if !plugin.IsNotFound(err) {
			t.Errorf("%s: IsNotFound(%v) = false", tc.method, err)
		}
	}
}

// TestGetErrorMeansNoSuchVolume: G2. The daemon treats any Get error that
// is not a network error as "does not exist" (and purges its record).
func TestGetErrorMeansNoSuchVolume(t *testing.T) {
	d := newMemDriver()
	_, c := serve(t, d)
	d.with(func() { d.errs["Get"] = errors.New("backend unreachable") })
	_, err := c.Get(context.Background(), &GetRequest{Name: "v"})
	if !IsNoSuchVolume(err) {
		t.Fatalf("IsNoSuchVolume(%v) = false; the daemon would purge the volume", err)
	}
	if errors.Is(err, ErrNoSuchVolume) {
		t.Errorf("a driver error is not the null-Volume sentinel: %v", err)
	}
	// A nil answer is a null Volume.
	d.with(func() { delete(d.errs, "Get") })
	d.with(func() { d.resps["Get"] = (*GetResponse)(nil) })
	if _, err := c.Get(context.Background(), &GetRequest{Name: "v"}); !errors.Is(err, ErrNoSuchVolume) {
		t.Fatalf("nil GetResponse: err = %v, want ErrNoSuchVolume", err)
	}
}

func TestIsNoSuchVolume(t *testing.T) {
	if IsNoSuchVolume(nil) {
		t.Error("nil error means the volume exists")
	}
	for _, err := range []error{ErrNoSuchVolume, errors.New("x"), &plugin.StatusError{Status: 500, Method: MethodGet, Msg: "x"}} {
		if !IsNoSuchVolume(err) {
			t.Errorf("IsNoSuchVolume(%v) = false", err)
		}
	}
	// A plugin that is not there: a network error, the volume is kept.
	pc, err := plugin.NewClient("unix:///tmp/nonexistent-voltest.sock", plugin.WithBackoff(plugin.Backoff{}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewClient(pc).Get(context.Background(), &GetRequest{Name: "v"})
	if err == nil || IsNoSuchVolume(err) || !plugin.IsTransport(err) {
		t.Fatalf("Get from a missing plugin: err = %v, IsNoSuchVolume = %v; want a kept volume", err, IsNoSuchVolume(err))
	}
}

// TestValidation: requests missing fields the daemon always sends are 400
// and never reach the driver.
func TestValidation(t *testing.T) {
	d := newMemDriver()
	_, c := serve(t, d)
	ctx := context.Background()
	noName := "request has no volume Name"
	cases := []struct {
		name string
		err  error
		text string
	}{
		{"create", c.Create(ctx, &CreateRequest{Opts: map[string]string{"a": "b"}}), MethodCreate + ": " + noName},
		{"create nil", c.Create(ctx, nil), MethodCreate + ": " + noName},
		{"remove", c.Remove(ctx, &RemoveRequest{}), MethodRemove + ": " + noName},
		{"mount", second(c.Mount(ctx, &MountRequest{ID: "x"})), MethodMount + ": " + noName},
		{"mount no ID", second(c.Mount(ctx, &MountRequest{Name: "v"})), MethodMount + `: request for volume "v" has no mount ID`},
		{"unmount", c.Unmount(ctx, &UnmountRequest{ID: "x"}), MethodUnmount + ": " + noName},
		{"unmount no ID", c.Unmount(ctx, &UnmountRequest{Name: "v"}), MethodUnmount + `: request for volume "v" has no mount ID`},
		{"path", second(c.Path(ctx, &PathRequest{})), MethodPath + ": " + noName},
		{"get", second(c.Get(ctx, nil)), MethodGet + ": " + noName},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantStatus(t, tc.err, http.StatusBadRequest, tc.text) })
	}
	if calls := d.callLog(); len(calls) != 0 {
		t.Errorf("invalid requests reached the driver: %v", calls)
	}
}

func second[T any](_ T, err error) error { return err }

// TestEmptyBody: G19. The daemon may send no body at all; List and
// Capabilities must answer, the others must say what is missing.
func TestEmptyBody(t *testing.T) {
	d := newMemDriver()
	r, _ := serve(t, d)
	for _, tc := range allCalls {
		status, body := postRaw(t, r, tc.method, "")
		switch tc.method {
		case MethodList, MethodCapabilities:
			if status != http.StatusOK {
				t.Errorf("%s with empty body: %d %s", tc.method, status, body)
			}
			if !json.Valid(body) || bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
				t.Errorf("%s answered %q, want a JSON object", tc.method, body)
			}
		default:
			if status != http.StatusBadRequest || !strings.Contains(errBody(t, body), "has no volume Name") {
				t.Errorf("%s with empty body: %d %s", tc.method, status, body)
			}
		}
	}
	// Nothing else reached the driver: an empty body (say, a daemon retry
	// that lost it, plugin.WithDrainedRetry) acts on no volume.
	if calls := d.callLog(); len(calls) != 2 || !strings.HasPrefix(calls[0], "List") || !strings.HasPrefix(calls[1], "Capabilities") {
		t.Errorf("driver calls %q, want only List and Capabilities", calls)
	}
	// The daemon's own encoding of the argument-less calls.
	for _, m := range []string{MethodList, MethodCapabilities} {
		if status, body := postRaw(t, r, m, "{}\n"); status != http.StatusOK {
			t.Errorf("%s {}: %d %s", m, status, body)
		}
	}
}

// TestBadJSON: malformed bodies are 400 with a decode message, for every
// method, and reach no driver.
func TestBadJSON(t *testing.T) {
	d := newMemDriver()
	r, _ := serve(t, d)
	for _, tc := range allCalls {
		for _, body := range []string{"{", "[]", `"Name"`, `{"Name": 5}`, `{"Name":"v","ID":["x"]}`, `{"Name":"v","Opts":{"a":1}}`} {
			if tc.method != MethodMount && tc.method != MethodUnmount && strings.Contains(body, `"ID"`) {
				continue // unknown keys are fine elsewhere
			}
			if tc.method != MethodCreate && strings.Contains(body, `"Opts"`) {
				continue
			}
			if (tc.method == MethodList || tc.method == MethodCapabilities) && strings.Contains(body, `"Name"`) && body != `"Name"` {
				continue // List and Capabilities ignore fields
			}
			status, out := postRaw(t, r, tc.method, body)
			if status != http.StatusBadRequest {
				t.Errorf("%s %s: status %d %s, want 400", tc.method, body, status, out)
				continue
			}
			if msg := errBody(t, out); !strings.HasPrefix(msg, "decode request: ") {
				t.Errorf("%s %s: Err = %q", tc.method, body, msg)
			}
		}
	}
	if calls := d.callLog(); len(calls) != 0 {
		t.Errorf("bad requests reached the driver: %v", calls)
	}
}

// TestPanic: a panicking driver costs one 500, and the plugin keeps serving.
func TestPanic(t *testing.T) {
	d := newMemDriver()
	_, c := serve(t, d)
	ctx := context.Background()
	if err := c.Create(ctx, &CreateRequest{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	d.with(func() { d.panics["Mount"] = true })
	_, err := c.Mount(ctx, &MountRequest{Name: "v", ID: "id"})
	wantStatus(t, err, http.StatusInternalServerError, "")
	if !strings.Contains(err.Error(), "driver exploded in Mount") {
		t.Errorf("panic message lost: %v", err)
	}
	if _, err := c.Get(ctx, &GetRequest{Name: "v"}); err != nil {
		t.Fatalf("after a panic: %v", err)
	}
}

// TestHandlerGuards: answers that would confuse or crash the daemon are
// fixed or refused by the Handler.
func TestHandlerGuards(t *testing.T) {
	d := newMemDriver()
	_, c := serve(t, d)
	ctx := context.Background()

	d.with(func() { d.resps["Mount"] = &MountResponse{} })
	_, err := c.Mount(ctx, &MountRequest{Name: "v", ID: "id"})
	wantStatus(t, err, http.StatusInternalServerError, `VolumeDriver.Mount: volume driver returned no Mountpoint for volume "v"`)
	d.with(func() { d.resps["Mount"] = (*MountResponse)(nil) })
	_, err = c.Mount(ctx, &MountRequest{Name: "v", ID: "id"})
	wantStatus(t, err, http.StatusInternalServerError, "")

	d.with(func() { d.resps["List"] = &ListResponse{Volumes: []*Volume{{Name: "a"}, nil}} })
	_, err = c.List(ctx)
	wantStatus(t, err, http.StatusInternalServerError, "VolumeDriver.List: volume driver listed a nil volume at index 1")
	d.with(func() { d.resps["List"] = (*ListResponse)(nil) })
	if l, err := c.List(ctx); err != nil || l.Volumes == nil || len(l.Volumes) != 0 {
		t.Errorf("nil ListResponse: %+v, %v; want an empty list", l, err)
	}

	shared := &Volume{Mountpoint: "/m"}
	d.with(func() { d.resps["Get"] = &GetResponse{Volume: shared} })
	g, err := c.Get(ctx, &GetRequest{Name: "named"})
	if err != nil || g.Volume.Name != "named" || g.Volume.Mountpoint != "/m" {
		t.Errorf("Get with empty Name = %+v, %v; want the requested name", g, err)
	}
	if shared.Name != "" {
		t.Error("Handler modified the driver's Volume")
	}

	d.with(func() { d.resps["Capabilities"] = (*CapabilitiesResponse)(nil) })
	if caps, err := c.Capabilities(ctx); err != nil || caps.Capabilities.Scope != ScopeLocal {
		t.Errorf("nil CapabilitiesResponse = %+v, %v", caps, err)
	}
}

// TestTimeouts: the daemon gives up on a volume call after 1 or 2 minutes
// (G4); a timeout is a network error, so the volume is kept.
func TestTimeouts(t *testing.T) {
	oldShort, oldLong := shortTimeout, longTimeout
	shortTimeout, longTimeout = 100*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { shortTimeout, longTimeout = oldShort, oldLong })

	d := newMemDriver()
	_, c := serve(t, d)
	d.with(func() { d.block["Get"] = true })
	start := time.Now()
	_, err := c.Get(context.Background(), &GetRequest{Name: "v"})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked Get: err = %v, want a deadline error", err)
	}
	if IsNoSuchVolume(err) {
		t.Errorf("a timed-out Get would make the daemon purge the volume: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Get took %v", el)
	}
}

// TestClientIsADriver: NewHandler(NewClient(c)) proxies a plugin.
func TestClientIsADriver(t *testing.T) {
	d := newMemDriver()
	_, inner := serve(t, d)
	r := plugintest.Serve(t, "volproxy", NewHandler(inner))
	c := NewClient(r.Client)
	ctx := context.Background()
	if err := c.Create(ctx, &CreateRequest{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Mount(ctx, &MountRequest{Name: "v", ID: "i"}); err != nil || m.Mountpoint != "/mnt/v" {
		t.Fatalf("Mount through proxy = %+v, %v", m, err)
	}
	if _, err := c.Get(ctx, &GetRequest{Name: "nope"}); !IsNoSuchVolume(err) {
		t.Fatalf("Get through proxy = %v", err)
	}
}
