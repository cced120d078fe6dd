package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	helpers "github.com/docker/go-plugins-helpers/volume"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
)

// testServers starts the three servers in a short temp dir under /tmp (unix
// socket paths are limited to 108 bytes; t.TempDir's can be longer).
func testServers(tb testing.TB) *servers {
	tb.Helper()
	dir, err := os.MkdirTemp("/tmp", "dpsdk")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	s, err := startServers(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// TestServersAnswerTheSame checks that the comparison is fair: the same
// daemon-style request gets the same status and the same bytes from every
// server, and dockplug really runs with its metrics on.
func TestServersAnswerTheSame(t *testing.T) {
	s := testServers(t)
	for _, name := range serverNames {
		t.Run(name, func(t *testing.T) {
			c := newClient(s.socket(name), 1)
			defer c.CloseIdleConnections()
			req, err := http.NewRequest(http.MethodPost, getURL, strings.NewReader(getBody))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", plugin.MediaType)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			if string(body) != wantBody {
				t.Errorf("body %q, want %q", body, wantBody)
			}
			// What the daemon decodes (case-insensitively, into its own
			// struct) must be the same too.
			var got struct {
				Volume *struct{ Name, Mountpoint string }
				Err    string
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			want := struct{ Name, Mountpoint string }{"vol", "/x"}
			if got.Err != "" || got.Volume == nil || !reflect.DeepEqual(*got.Volume, want) {
				t.Errorf("decoded %+v", got)
			}
			// The helper the benchmarks use accepts the answer.
			var buf bytes.Buffer
			if err := callGet(c, &buf); err != nil {
				t.Error(err)
			}
		})
	}

	// Two calls reached dockplug; its middleware must have counted them.
	mfs, err := s.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var counted float64
	for _, mf := range mfs {
		if mf.GetName() != "dockplug_plugin_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" && l.GetValue() == "VolumeDriver.Get" {
					counted += m.GetCounter().GetValue()
				}
			}
		}
	}
	if counted != 2 {
		t.Errorf("dockplug metrics counted %v Get calls, want 2 (is the middleware on?)", counted)
	}
}

// BenchmarkGet measures one Get call, client included, against each server
// at 1 and 32 concurrent callers (exactly that many goroutines, whatever
// GOMAXPROCS is). Servers and client share the test process.
func BenchmarkGet(b *testing.B) {
	s := testServers(b)
	for _, name := range serverNames {
		b.Run(name, func(b *testing.B) {
			for _, conc := range []int{1, 32} {
				b.Run("c"+strconv.Itoa(conc), func(b *testing.B) {
					benchGet(b, s.socket(name), conc)
				})
			}
		})
	}
}

func benchGet(b *testing.B, sock string, conc int) {
	c := newClient(sock, conc)
	defer c.CloseIdleConnections()
	// Open every connection before timing.
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			var buf bytes.Buffer
			if err := callGet(c, &buf); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	b.ReportAllocs()
	var left atomic.Int64
	left.Store(int64(b.N))
	b.ResetTimer()
	for range conc {
		wg.Go(func() {
			var buf bytes.Buffer
			for left.Add(-1) >= 0 {
				if err := callGet(c, &buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// discardWriter is the cheapest http.ResponseWriter: BenchmarkHandler
// measures the servers' own code, without sockets or net/http's server.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(s int)   { w.status = s }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

// helpersMux digs the http.ServeMux out of a go-plugins-helpers handler,
// which serves it only through an http.Server of its own.
func helpersMux(h *helpers.Handler) *http.ServeMux {
	f := reflect.ValueOf(h).Elem().FieldByName("Handler").FieldByName("mux")
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(*http.ServeMux)
}

// BenchmarkHandler is one Get through each server's http.Handler, in
// memory: the part of the cost that differs between the servers.
func BenchmarkHandler(b *testing.B) {
	dp, err := plugin.NewServer(plugin.Config{
		Name:    "dockplug",
		Metrics: plugin.NewMetrics(prometheus.NewRegistry()),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, volume.NewHandler(noopDriver{}))
	if err != nil {
		b.Fatal(err)
	}
	handlers := map[string]http.Handler{
		"dockplug": dp,
		"helpers":  helpersMux(helpers.NewHandler(helpersDriver{})),
		"raw":      http.HandlerFunc(rawGet),
	}
	for _, name := range serverNames {
		b.Run(name, func(b *testing.B) {
			h := handlers[name]
			body := strings.NewReader(getBody)
			r, err := http.NewRequest(http.MethodPost, getURL, body)
			if err != nil {
				b.Fatal(err)
			}
			r.Header.Set("Accept", plugin.MediaType)
			r.RequestURI = r.URL.RequestURI()
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(getBody)
				r.Body = io.NopCloser(body)
				clear(w.h)
				w.status, w.n = 0, 0
				h.ServeHTTP(w, r)
			}
			if w.status != http.StatusOK || w.n != len(wantBody) {
				b.Fatalf("status %d, %d bytes", w.status, w.n)
			}
		})
	}
}
