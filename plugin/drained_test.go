package plugin_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/dockplug/dockplug/plugin"
)

// A plugin that dies after reading the request, before any answer, fails
// http.Client.Do: the daemon retries, and the retry carries what is left of
// its drained request buffer: nothing. WithDrainedRetry reproduces that;
// without it the Client resends the whole body.
func TestRetryAfterRequestWasRead(t *testing.T) {
	for _, drained := range []bool{false, true} {
		t.Run(fmt.Sprintf("drained=%v", drained), func(t *testing.T) {
			srv := serveRaw(t, filepath.Join(shortDir(t), "p.sock"), func(n int, conn net.Conn) {
				if n > 0 {
					answer200(`{"Msg":"second"}`)(conn)
				} // the first: hang up without a word
			})
			opts := []plugin.ClientOption{patientRetries}
			if drained {
				opts = append(opts, plugin.WithDrainedRetry())
			}
			c, _ := plugin.NewClient("unix://"+srv.path, opts...)
			defer c.Close()
			var out echoResp
			if err := c.Call(context.Background(), "T.Echo", echoReq{Msg: "payload"}, &out); err != nil || out.Msg != "second" {
				t.Fatalf("call: %v %+v", err, out)
			}
			reqs := srv.requests()
			full := seen{int64(len(`{"Msg":"payload"}` + "\n")), `{"Msg":"payload"}` + "\n"}
			want := []seen{full, full}
			if drained {
				want[1] = seen{0, ""}
			}
			if len(reqs) != 2 || reqs[0] != want[0] || reqs[1] != want[1] {
				t.Fatalf("requests %+v, want %+v", reqs, want)
			}
		})
	}
}

// A dial failure sends nothing, so even the daemon's drained buffer is
// still full on the retry.
func TestRetryAfterDialFailureKeepsBody(t *testing.T) {
	path := filepath.Join(shortDir(t), "late.sock")
	var srv *rawServer
	hook := plugin.WithRetryHook(func(err error) {
		if srv == nil { // the plugin appears after the first failed dial
			srv = serveRaw(t, path, func(_ int, conn net.Conn) { answer200(`{"Msg":"up"}`)(conn) })
		}
	})
	c, _ := plugin.NewClient("unix://"+path, patientRetries, plugin.WithDrainedRetry(), hook)
	defer c.Close()
	var out echoResp
	if err := c.Call(context.Background(), "T.Echo", echoReq{Msg: "kept"}, &out); err != nil || out.Msg != "up" {
		t.Fatalf("call: %v %+v", err, out)
	}
	body := `{"Msg":"kept"}` + "\n"
	if reqs := srv.requests(); len(reqs) != 1 || reqs[0] != (seen{int64(len(body)), body}) {
		t.Fatalf("requests %+v, want the full body once", reqs)
	}
}
