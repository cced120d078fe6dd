package plugin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestClientRetriesTransportErrorsUntilPluginStarts(t *testing.T) {
	dir := shortDir(t)
	c, err := plugin.NewClient("unix://"+filepath.Join(dir, "late.sock"),
		plugin.WithBackoff(plugin.Backoff{Base: 20 * time.Millisecond, Limit: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		r, err := plugintest.StartIn(dir, plugin.Config{Name: "late", SocketDir: dir}, newKind("T"))
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { r.Stop() })
	}()
	var out echoResp
	if err := c.Call(context.Background(), "T.Echo", echoReq{Msg: "later"}, &out); err != nil || out.Msg != "later" {
		t.Fatalf("call through start-up: %v %+v", err, out)
	}
}

func TestClientGivesUpOnScheduleAndNeverRetriesNon200(t *testing.T) {
	dir := shortDir(t)
	c, _ := plugin.NewClient("unix://"+filepath.Join(dir, "none.sock"),
		plugin.WithBackoff(plugin.Backoff{Base: 10 * time.Millisecond, Limit: 100 * time.Millisecond}))
	err := c.Call(context.Background(), "T.Echo", nil, nil)
	if err == nil || !plugin.IsTransport(err) {
		t.Fatalf("missing socket: %v", err)
	}

	var hits atomic.Int64
	ln, _ := net.Listen("unix", filepath.Join(dir, "fail.sock"))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(500)
		w.Write([]byte("not json at all"))
	})}
	go srv.Serve(ln)
	defer srv.Close()
	c, _ = plugin.NewClient("unix://"+filepath.Join(dir, "fail.sock"), plugin.WithBackoff(plugintest.TestBackoff))
	err = c.Call(context.Background(), "T.Echo", nil, nil)
	var se *plugin.StatusError
	if !errors.As(err, &se) || se.Msg != "not json at all" || err.Error() != "T.Echo: not json at all" {
		t.Fatalf("raw body error: %v", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("non-200 retried: %d hits", hits.Load())
	}
}

func TestDaemonBackoffSchedule(t *testing.T) {
	// 1+2+4+8 = 15 s of sleeps, then 15+16 >= 30 gives up: five attempts.
	// Scaled down 50x so the test is fast; the arithmetic is the same, and
	// each decision has over 100 ms of room on a busy machine.
	dir := shortDir(t)
	var attempts atomic.Int64
	ln, _ := net.Listen("unix", filepath.Join(dir, "count.sock"))
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			attempts.Add(1)
			conn.Close() // EOF before any answer: a transport error
		}
	}()
	defer ln.Close()
	c, _ := plugin.NewClient("unix://"+filepath.Join(dir, "count.sock"),
		plugin.WithBackoff(plugin.Backoff{Base: 20 * time.Millisecond, Limit: 600 * time.Millisecond}))
	if err := c.Call(context.Background(), "T.Echo", nil, nil); err == nil {
		t.Fatal("call to a closing socket succeeded")
	}
	if n := attempts.Load(); n != 5 {
		t.Fatalf("attempts = %d, want 5 like the daemon", n)
	}
}

func TestPluginRestartBetweenCalls(t *testing.T) {
	dir := shortDir(t)
	cfg := plugin.Config{Name: "phoenix", SocketDir: dir}
	r, err := plugintest.StartIn(dir, cfg, newKind("T"))
	if err != nil {
		t.Fatal(err)
	}
	c := r.Client
	ctx := context.Background()
	if err := c.Call(ctx, "T.Echo", echoReq{Msg: "1"}, nil); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	r2, err := plugintest.StartIn(dir, cfg, newKind("T"))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Stop()
	var out echoResp
	if err := c.Call(ctx, "T.Echo", echoReq{Msg: "2"}, &out); err != nil || out.Msg != "2" {
		t.Fatalf("call after restart: %v %+v", err, out)
	}
}

func TestEmptyAndBadResponseBodies(t *testing.T) {
	dir := shortDir(t)
	ln, _ := net.Listen("unix", filepath.Join(dir, "odd.sock"))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "" || r.Header.Get("Accept") != plugin.MediaType || r.Host != "plugin.moby.localhost" {
			w.WriteHeader(400)
			return
		}
		switch r.URL.Path {
		case "/T.Empty":
		case "/T.Bad":
			w.Write([]byte("{"))
		case "/T.Err":
			w.WriteHeader(418)
			w.Write([]byte(`{"Err":"teapot"}`))
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	c, _ := plugin.NewClient("unix://"+filepath.Join(dir, "odd.sock"), plugin.WithBackoff(plugintest.TestBackoff))
	var m plugin.Manifest
	if err := c.Call(context.Background(), "T.Empty", nil, &m); err == nil || !strings.Contains(err.Error(), "empty response body") {
		t.Fatalf("empty 200 body accepted: %v", err)
	}
	if err := c.Call(context.Background(), "T.Bad", nil, &m); err == nil || !strings.Contains(err.Error(), "decode response") {
		t.Fatalf("bad body: %v", err)
	}
	if err := c.Call(context.Background(), "T.Err", nil, &m); err == nil || err.Error() != "T.Err: teapot" {
		t.Fatalf("Err body: %v", err)
	}
}

func TestLongUnixPathRejected(t *testing.T) {
	_, err := plugin.NewClient("unix:///" + strings.Repeat("x", 120))
	if err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("long path: %v", err)
	}
}

func TestDiscoveryOrder(t *testing.T) {
	sock, etc, lib := shortDir(t), shortDir(t), shortDir(t)
	reg := &plugin.Registry{SocketDir: sock, SpecDirs: []string{etc, lib}}
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mksock := func(p string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		ln, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
	lookup := func(name string) string {
		f, err := reg.Lookup(name)
		if err != nil {
			return "error: " + err.Error()
		}
		return f.Addr
	}
	// 1. NAME.sock beats NAME/NAME.sock beats any spec.
	mksock(filepath.Join(sock, "a.sock"))
	mksock(filepath.Join(sock, "a", "a.sock"))
	write(filepath.Join(etc, "a.spec"), "tcp://127.0.0.1:1")
	if got := lookup("a"); got != "unix://"+filepath.Join(sock, "a.sock") {
		t.Errorf("a: %s", got)
	}
	mksock(filepath.Join(sock, "b", "b.sock"))
	if got := lookup("b"); got != "unix://"+filepath.Join(sock, "b", "b.sock") {
		t.Errorf("b: %s", got)
	}
	// A regular file named .sock is not a socket and is skipped.
	write(filepath.Join(sock, "c.sock"), "")
	write(filepath.Join(etc, "c", "c.spec"), " tcp://127.0.0.1:3\n")
	write(filepath.Join(etc, "c.json"), `{"Addr":"tcp://127.0.0.1:4"}`)
	if got := lookup("c"); got != "tcp://127.0.0.1:3" {
		t.Errorf("c: .spec in a subdirectory must beat .json: %s", got)
	}
	// /etc before /usr/lib.
	write(filepath.Join(lib, "d.spec"), "tcp://127.0.0.1:5")
	write(filepath.Join(etc, "d", "d.json"), `{"Name":"ignored","Addr":"https://127.0.0.1:6","TLSConfig":{}}`)
	f, err := reg.Lookup("d")
	if err != nil || f.Addr != "https://127.0.0.1:6" || f.Name != "d" || !f.TLS.InsecureSkipVerify {
		t.Errorf("d: %+v %v (TLSConfig without CAFile means no verification)", f, err)
	}
	write(filepath.Join(lib, "e.spec"), "/run/e.sock")
	if got := lookup("e"); !strings.Contains(got, "Unknown protocol") {
		t.Errorf("e: %s", got)
	}
	if _, err := reg.Lookup("zzz"); !errors.Is(err, plugin.ErrNotFound) {
		t.Errorf("zzz: %v", err)
	}
	if _, err := reg.Lookup(""); err == nil {
		t.Error("empty name accepted")
	}

	found, errs := reg.Scan()
	var names []string
	for _, f := range found {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "a,b,c,d" || len(errs) != 1 {
		t.Errorf("scan: %v, errs %v", names, errs)
	}
	// A name found several ways has the address Lookup gives it, as in the daemon.
	for _, f := range found {
		if f.Name == "c" && f.Addr != "tcp://127.0.0.1:3" {
			t.Errorf("scan resolved c to %s, the daemon uses c/c.spec", f.Addr)
		}
	}
}

func TestGetChecksImplementsCaseSensitively(t *testing.T) {
	r := plugintest.Serve(t, "kinds", newKind("VolumeDriver"))
	reg := &plugin.Registry{SocketDir: r.SocketDir}
	ctx := context.Background()
	if _, err := reg.Get(ctx, "kinds", "VolumeDriver", plugin.WithBackoff(plugintest.TestBackoff)); err != nil {
		t.Fatal(err)
	}
	_, err := reg.Get(ctx, "kinds", "volumedriver", plugin.WithBackoff(plugintest.TestBackoff))
	if err == nil || !strings.Contains(err.Error(), "does not implement the requested driver") {
		t.Fatalf("lower-case kind: %v", err)
	}
	_, err = reg.Get(ctx, "absent", "VolumeDriver", plugin.WithBackoff(plugintest.TestBackoff))
	if !errors.Is(err, plugin.ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
}

// pki is a throwaway CA with a server and a client certificate.
type pki struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	writePEM := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
		return p
	}
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(key)
		return writePEM(name+".pem", "CERTIFICATE", der), writePEM(name+"-key.pem", "EC PRIVATE KEY", kd)
	}
	p := pki{ca: writePEM("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func TestTCPWithMutualTLSWritesSpecTheDaemonCanUse(t *testing.T) {
	p := newPKI(t)
	specDir := shortDir(t)
	cfg := plugin.Config{Name: "secure", TCPAddr: "127.0.0.1:0", SpecDir: specDir, TLS: &plugin.ServerTLS{
		CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.ca,
		DaemonCAFile: p.ca, DaemonCertFile: p.clientCert, DaemonKeyFile: p.clientKey,
	}}
	r, err := plugintest.StartIn(specDir, cfg, newKind("VolumeDriver"))
	if err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(specDir, "secure.json")
	raw, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	json.Unmarshal(raw, &spec)
	if !strings.HasPrefix(spec["Addr"].(string), "https://127.0.0.1:") {
		t.Fatalf("spec: %s", raw)
	}
	// Discover it as the daemon would, from the spec dir, and activate over mTLS.
	reg := &plugin.Registry{SocketDir: shortDir(t), SpecDirs: []string{specDir}}
	ctx := context.Background()
	if _, err := reg.Get(ctx, "secure", "VolumeDriver", plugin.WithBackoff(plugintest.TestBackoff)); err != nil {
		t.Fatalf("activate over TLS: %v", err)
	}
	// Without a client certificate the handshake fails.
	c, _ := plugin.NewClient(spec["Addr"].(string), plugin.WithTLS(&plugin.TLSOptions{CAFile: p.ca}), plugin.WithBackoff(plugin.Backoff{}))
	if _, err := c.Activate(ctx); err == nil {
		t.Fatal("activated without a client certificate")
	}
	// Verification against the wrong CA fails too.
	other := newPKI(t)
	c, _ = plugin.NewClient(spec["Addr"].(string), plugin.WithTLS(&plugin.TLSOptions{CAFile: other.ca, ExclusiveRootPools: true,
		CertFile: p.clientCert, KeyFile: p.clientKey}), plugin.WithBackoff(plugin.Backoff{}))
	if _, err := c.Activate(ctx); err == nil {
		t.Fatal("server verified against the wrong CA")
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(specPath); !os.IsNotExist(err) {
		t.Fatal("spec file not removed on exit")
	}
}

func TestInsecureTCP(t *testing.T) {
	specDir := shortDir(t)
	r, err := plugintest.StartIn(specDir, plugin.Config{Name: "plain", TCPAddr: "127.0.0.1:0", Insecure: true, SpecDir: specDir}, newKind("T"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	f, err := plugin.ReadSpecFile("plain", filepath.Join(specDir, "plain.json"))
	if err != nil || !strings.HasPrefix(f.Addr, "tcp://127.0.0.1:") || f.TLS != nil {
		t.Fatalf("spec: %+v %v", f, err)
	}
	c, _ := f.Client()
	if _, err := c.Activate(context.Background()); err != nil {
		t.Fatal(err)
	}
}
