package plugin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
)

// seen is one request as a raw server read it.
type seen struct {
	contentLength int64
	body          string
}

// rawServer accepts connections on a unix socket and hands the n-th
// request (0-based) to answer, which writes raw bytes (or nothing) and
// returns; the connection is then closed. It records every request.
type rawServer struct {
	path string
	mu   sync.Mutex
	reqs []seen
}

func serveRaw(t *testing.T, path string, answer func(n int, conn net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{path: path}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				body, _ := io.ReadAll(req.Body)
				s.mu.Lock()
				n := len(s.reqs)
				s.reqs = append(s.reqs, seen{req.ContentLength, string(body)})
				s.mu.Unlock()
				answer(n, conn)
			}()
		}
	}()
	return s
}

func (s *rawServer) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

// fastRetries retries quickly and often: a test that must see no retry
// would see several with the old behaviour, whatever the machine's speed.
var fastRetries = plugin.WithBackoff(plugin.Backoff{Base: time.Millisecond, Limit: 200 * time.Millisecond})

// patientRetries never gives up within a test: retries are expected and
// their number is decided by the server, not by the clock.
var patientRetries = plugin.WithBackoff(plugin.Backoff{Base: time.Millisecond, Limit: time.Hour})

func answer200(body string) func(net.Conn) {
	return func(conn net.Conn) {
		fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

// A failure while reading the body after the headers arrived is the
// call's error: the daemon does not retry it (it is not an error of
// http.Client.Do), so the plugin runs the call once.
func TestBodyReadFailureIsNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		ret        bool
		check      func(error) bool
	}{
		{"200 decoded", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"Msg\":", true, func(err error) bool {
			var se *plugin.StatusError
			return err != nil && !errors.As(err, &se)
		}},
		{"non-200", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\n{\"Err\":", true, func(err error) bool {
			// The daemon's statusError carries the read error's text.
			var se *plugin.StatusError
			return errors.As(err, &se) && se.Status == 500 && se.Msg == io.ErrUnexpectedEOF.Error()
		}},
		// The daemon does not read a 200 body it has no struct for.
		{"200 ignored", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"Msg\":", false, func(err error) bool { return err == nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := serveRaw(t, filepath.Join(shortDir(t), "p.sock"), func(_ int, conn net.Conn) { io.WriteString(conn, tc.head) })
			c, err := plugin.NewClient("unix://"+srv.path, fastRetries)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var out echoResp
			var ret any
			if tc.ret {
				ret = &out
			}
			err = c.Call(context.Background(), "T.Echo", echoReq{Msg: "once"}, ret)
			if !tc.check(err) || plugin.IsTransport(err) {
				t.Errorf("error %v (transport: %v)", err, plugin.IsTransport(err))
			}
			if n := len(srv.requests()); n != 1 {
				t.Errorf("the plugin executed the call %d times, want 1", n)
			}
		})
	}
}

// The daemon decodes a 200 body from the stream and stops at the end of
// the first JSON value: a connection that breaks after it is no error.
func TestBodyBreakingAfterCompleteValue(t *testing.T) {
	srv := serveRaw(t, filepath.Join(shortDir(t), "p.sock"), func(_ int, conn net.Conn) {
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"Msg\":\"done\"} ")
	})
	c, _ := plugin.NewClient("unix://"+srv.path, fastRetries)
	defer c.Close()
	var out echoResp
	if err := c.Call(context.Background(), "T.Echo", echoReq{Msg: "x"}, &out); err != nil || out.Msg != "done" {
		t.Fatalf("complete value, then a broken connection: %v %+v", err, out)
	}
	if n := len(srv.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

// The text of a non-200 answer is the daemon's: the "Err" string when the
// body is JSON with a non-empty Err, else the body exactly as sent.
func TestStatusErrorText(t *testing.T) {
	for _, tc := range []struct{ body, msg string }{
		{`{"Err":"teapot"}`, "teapot"},
		{`{"Err":"  spaced\n"}`, "  spaced\n"},
		{`{"err":"any case"}`, "any case"},
		{"upstream down\n", "upstream down\n"},
		{"  padded  ", "  padded  "},
		{`{"Err":""}` + "\n", `{"Err":""}` + "\n"},
		{`{"Error":"ipam key"}`, `{"Error":"ipam key"}`},
		{`{"Err":7}`, `{"Err":7}`},
		{"", ""},
	} {
		srv := serveRaw(t, filepath.Join(shortDir(t), "p.sock"), func(_ int, conn net.Conn) {
			fmt.Fprintf(conn, "HTTP/1.1 418 I'm a teapot\r\nContent-Length: %d\r\n\r\n%s", len(tc.body), tc.body)
		})
		c, _ := plugin.NewClient("unix://"+srv.path, fastRetries)
		err := c.Call(context.Background(), "T.Echo", nil, nil)
		c.Close()
		var se *plugin.StatusError
		if !errors.As(err, &se) || se.Status != 418 || se.Msg != tc.msg || err.Error() != "T.Echo: "+tc.msg {
			t.Errorf("body %q: %#v (%v), want message %q", tc.body, se, err, tc.msg)
		}
	}
}
