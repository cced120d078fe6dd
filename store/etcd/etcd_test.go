package etcd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dockplug/dockplug/store/etcd"
	"github.com/dockplug/dockplug/store/etcd/etcdtest"
)

func TestDialPutGet(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := t.Context()
	cli, err := etcd.Dial(ctx, srv.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
}

func TestDialUnreachableIsClearAndBounded(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	start := time.Now()
	_, err = etcd.Dial(t.Context(), []string{"http://" + addr}, etcd.WithDialTimeout(500*time.Millisecond))
	if err == nil {
		t.Fatal("dial of a closed port succeeded")
	}
	if !errors.Is(err, etcd.ErrUnavailable) || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unclear error: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("dial took %s with a 500ms timeout", d)
	}
	if _, err := etcd.Dial(t.Context(), nil); err == nil {
		t.Error("dial without endpoints succeeded")
	}
}

func TestDoRetriesAcrossRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := t.Context()
	cli, err := etcd.Dial(ctx, srv.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	srv.Stop()
	go func() {
		time.Sleep(700 * time.Millisecond)
		srv.Restart()
	}()
	var attempts atomic.Int32
	err = etcd.Retry{Attempt: 300 * time.Millisecond, Total: 30 * time.Second}.Do(ctx, func(ctx context.Context) error {
		attempts.Add(1)
		_, err := cli.Put(ctx, "after-restart", "yes")
		return err
	})
	if err != nil {
		t.Fatalf("put across restart: %v", err)
	}
	if attempts.Load() < 2 {
		t.Errorf("%d attempts: the server was down, expected retries", attempts.Load())
	}
	resp, err := cli.Get(ctx, "after-restart")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get after restart: %v %v", resp, err)
	}
}

func TestRestartKeepsData(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	ctx := t.Context()
	if _, err := cli.Put(ctx, "durable", "1"); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	var resp *clientv3.GetResponse
	err := etcd.Do(ctx, func(ctx context.Context) (err error) {
		resp, err = cli.Get(ctx, "durable")
		return err
	})
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("data lost across restart: %v %v", resp, err)
	}
}

func TestDoGivesUpWithErrUnavailable(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client()
	srv.Stop()
	start := time.Now()
	err := etcd.Retry{Attempt: 200 * time.Millisecond, Total: time.Second}.Do(t.Context(), func(ctx context.Context) error {
		_, err := cli.Get(ctx, "x")
		return err
	})
	if !errors.Is(err, etcd.ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %s, bound was 1s", d)
	}
}

func TestDoReturnsOtherErrorsAtOnce(t *testing.T) {
	boom := errors.New("boom")
	n := 0
	err := etcd.Do(t.Context(), func(context.Context) error { n++; return boom })
	if !errors.Is(err, boom) || n != 1 {
		t.Fatalf("err %v after %d attempts", err, n)
	}
	if etcd.IsTransient(boom) || etcd.IsTransient(nil) {
		t.Error("plain errors are not transient")
	}
}

func TestDialMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil)
	newCert(t, dir, "server", ca, caKey)
	newCert(t, dir, "client", ca, caKey)
	p := func(n string) string { return filepath.Join(dir, n) }
	srv := etcdtest.Start(t, etcdtest.WithTLS(p("server.crt"), p("server.key"), p("ca.crt")))
	ctx := t.Context()
	cli, err := etcd.Dial(ctx, srv.Endpoints(), etcd.WithTLS(p("client.crt"), p("client.key"), p("ca.crt")))
	if err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	if _, err := cli.Put(ctx, "tls", "ok"); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	// No client certificate: the server refuses.
	if cli, err := etcd.Dial(ctx, srv.Endpoints(), etcd.WithTLS("", "", p("ca.crt")), etcd.WithDialTimeout(time.Second)); err == nil {
		cli.Close()
		t.Error("dial without a client certificate succeeded")
	}
	if _, err := etcd.Dial(ctx, srv.Endpoints(), etcd.WithTLS(p("client.crt"), "", p("ca.crt"))); err == nil {
		t.Error("a certificate without a key was accepted")
	}
	if _, err := etcd.Dial(ctx, srv.Endpoints(), etcd.WithTLS("", "", p("missing.crt"))); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("missing CA file: %v", err)
	}
}

// newCert writes name.crt and name.key, signed by parent (self-signed CA
// when parent is nil), valid for 127.0.0.1.
func newCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".crt", "CERTIFICATE", der)
	write(name+".key", "EC PRIVATE KEY", kder)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
