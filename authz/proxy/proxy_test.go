package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockplug/dockplug/authz/identity"
)

// fakeDaemon answers like dockerd's endpoints the proxy must carry: a
// plain request (echoing what it received), an upgraded attach and a
// hijack without upgrade (both echoing the raw stream back upper-cased).
func fakeDaemon(t *testing.T, dir string) string {
	t.Helper()
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"uri": r.RequestURI, "id": r.Header.Values(identity.Header),
			"forged": r.Header.Values("X-DOCKPLUG-identity"), "body": string(body)})
	})
	hijack := func(w http.ResponseWriter, r *http.Request) {
		var start map[string]any
		json.NewDecoder(r.Body).Decode(&start)
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		if _, up := r.Header["Upgrade"]; up {
			fmt.Fprint(c, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		} else {
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")
		}
		fmt.Fprintf(c, "id=%s\n", r.Header.Get(identity.Header))
		sc := bufio.NewScanner(brw)
		for sc.Scan() {
			fmt.Fprintln(c, strings.ToUpper(sc.Text()))
		}
		fmt.Fprintln(c, "stdin closed")
	}
	mux.HandleFunc("POST /v1.47/exec/{id}/start", hijack)
	mux.HandleFunc("POST /containers/{id}/attach", hijack)
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func startProxy(t *testing.T) (sock string, key []byte) {
	t.Helper()
	dir := t.TempDir()
	up := fakeDaemon(t, dir)
	key, err := identity.ReadOrCreateKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(dir, "authz.sock")
	l, err := Listen(sock, 0o666, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(up, key, nil).Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return sock, key
}

func dial(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProxyAddsVerifiedIdentityAndStripsForgeries(t *testing.T) {
	sock, key := startProxy(t)
	c := dial(t, sock)
	br := bufio.NewReader(c)
	for _, target := range []string{"/v1.47/containers/json?all=1", "http://evil/v1.47/containers/x%2Fy/json", "/info"} {
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: docker\r\nX-Dockplug-Identity: v1;uid=0;gid=0;pid=1;t=1;n=0;mac=x\r\nx-dockplug-identity: again\r\nContent-Length: 2\r\n\r\n{}", target)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			URI    string
			ID     []string
			Forged []string
			Body   string
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(got.ID) != 1 || got.Body != "{}" {
			t.Fatalf("%s: daemon got %+v", target, got)
		}
		cl, err := identity.Parse(key, got.ID[0], "POST", got.URI)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if cl.UID != uint32(os.Getuid()) || cl.GID != uint32(os.Getgid()) || cl.PID != int32(os.Getpid()) {
			t.Errorf("%s: claims %+v, want this process", target, cl)
		}
	}
}

func TestProxyHijacked(t *testing.T) {
	sock, key := startProxy(t)
	for _, tc := range []struct {
		name, target, hdr string
		status            int
	}{
		{"upgrade", "/v1.47/exec/abc/start", "Connection: Upgrade\r\nUpgrade: tcp\r\n", 101},
		{"hijack without upgrade", "/containers/abc/attach?stream=1&stdin=1", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"Detach":false,"Tty":false}`
			target, hdr := tc.target, tc.hdr
			c := dial(t, sock)
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: docker\r\n%sX-Dockplug-Identity: forged\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", target, hdr, len(body), body)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			value := strings.TrimSuffix(strings.TrimPrefix(line, "id="), "\n")
			if _, err := identity.Parse(key, value, "POST", target); err != nil {
				t.Fatalf("identity in the hijacked request: %q: %v", value, err)
			}
			fmt.Fprint(c, "hello\nworld\n")
			c.(*net.UnixConn).CloseWrite()
			rest, _ := io.ReadAll(br)
			if string(rest) != "HELLO\nWORLD\nstdin closed\n" {
				t.Errorf("stream: %q", rest)
			}
		})
	}
}

func TestListenRefusesLiveSocketAndOtherFiles(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	l, err := Listen(sock, 0o660, -1)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(sock); fi.Mode().Perm() != 0o660 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if _, err := Listen(sock, 0o666, -1); err == nil {
		t.Error("a live socket was replaced")
	}
	l.Close()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(file, 0o666, -1); err == nil {
		t.Error("a regular file was replaced")
	}
}
