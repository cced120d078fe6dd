package plugin_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/dockplug/dockplug/plugin"
)

func FuzzParseJSONSpec(f *testing.F) {
	f.Add([]byte(`{"Addr":"https://127.0.0.1:8080","TLSConfig":{"CAFile":"/ca.pem","CertFile":"/c","KeyFile":"/k"}}`))
	f.Add([]byte(`{"Name":"x","Addr":"tcp://h:1"}`))
	f.Add([]byte(`{"Addr":""}`))
	f.Add([]byte(`{"Addr":"%zz"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		found, err := plugin.ParseJSONSpec("p", "/etc/docker/plugins/p.json", data)
		if err == nil && (found.Addr == "" || found.Name != "p") {
			t.Fatalf("accepted %q as %+v", data, found)
		}
		if err != nil && !strings.Contains(err.Error(), "p.json") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte("tcp://127.0.0.1:8080\n"))
	f.Add([]byte("unix:///run/x.sock"))
	f.Add([]byte("/no/scheme"))
	f.Add([]byte(" :bad"))
	f.Fuzz(func(t *testing.T, data []byte) {
		found, err := plugin.ParseSpec("p", "/etc/docker/plugins/p.spec", data)
		if err != nil {
			return
		}
		u, perr := url.Parse(found.Addr)
		if found.Addr != strings.TrimSpace(string(data)) || perr != nil || u.Scheme == "" {
			t.Fatalf("accepted %q as %q", data, found.Addr)
		}
	})
}

// FuzzClientResponses feeds arbitrary answers to the client: it must return
// a value or an error, never panic, and keep the daemon's error rules.
func FuzzClientResponses(f *testing.F) {
	f.Add(200, []byte(`{"Implements":["VolumeDriver"]}`))
	f.Add(200, []byte(``))
	f.Add(500, []byte(`{"Err":"boom"}`))
	f.Add(404, []byte(`plain text`))
	f.Add(200, []byte(`{"Implements":"VolumeDriver"}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 200 || status > 599 {
			return
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			w.Write(body)
		}))
		defer srv.Close()
		c, err := plugin.NewClient("tcp://"+strings.TrimPrefix(srv.URL, "http://"), plugin.WithBackoff(plugin.Backoff{}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m, err := c.Activate(context.Background())
		var se *plugin.StatusError
		switch {
		case status != 200 && !errors.As(err, &se):
			t.Fatalf("status %d gave %v", status, err)
		case status == 200 && err == nil && m == nil:
			t.Fatal("nil manifest without error")
		}
	})
}
