package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/plugin"
)

// The TLS flags: every combination is turned into server settings or
// refused with the flags' names (plugin/server_tls_test.go proves the
// settings against certificates and a daemon-like client).
func TestTLSFlagCombinations(t *testing.T) {
	full := func(o serveOptions) serveOptions {
		o.tlsCert, o.tlsKey = "s.pem", "s-key.pem"
		return o
	}
	for _, c := range []struct {
		name         string
		o            serveOptions
		activatedTCP bool
		want         string // "": accepted
	}{
		{name: "unix socket", o: serveOptions{}},
		{name: "unix socket insecure", o: serveOptions{insecure: true}, want: "--insecure applies only to TCP"},
		{name: "unix socket with a certificate", o: full(serveOptions{}), want: "--tls-cert, --tls-key: TLS applies only to TCP"},
		{name: "unix socket with a client CA", o: serveOptions{tlsClientCA: "ca.pem"}, want: "--tls-client-ca: TLS applies only to TCP"},
		{name: "tcp, nothing", o: serveOptions{tcpAddr: "127.0.0.1:0"}, want: "or --insecure for plain HTTP"},
		{name: "tcp insecure", o: serveOptions{tcpAddr: "127.0.0.1:0", insecure: true}},
		{name: "insecure and a client CA", o: serveOptions{tcpAddr: "127.0.0.1:0", insecure: true, tlsClientCA: "ca.pem"}, want: "cannot go with --tls-client-ca"},
		{name: "insecure and a certificate", o: full(serveOptions{tcpAddr: "127.0.0.1:0", insecure: true}), want: "cannot go with --tls-cert, --tls-key"},
		{name: "client CA alone", o: serveOptions{tcpAddr: "127.0.0.1:0", tlsClientCA: "ca.pem"}, want: "--tls-client-ca: TLS needs the plugin's certificate"},
		{name: "certificate without key", o: serveOptions{tcpAddr: "127.0.0.1:0", tlsCert: "s.pem"}, want: "give both --tls-cert and --tls-key"},
		{name: "daemon CA alone", o: serveOptions{tcpAddr: "127.0.0.1:0", tlsDaemonCA: "ca.pem"}, want: "give both --tls-cert and --tls-key"},
		{name: "TLS", o: full(serveOptions{tcpAddr: "127.0.0.1:0"})},
		{name: "TLS verified by the daemon", o: full(serveOptions{tcpAddr: "127.0.0.1:0", tlsDaemonCA: "ca.pem"})},
		{name: "client CA without the daemon's certificate", o: full(serveOptions{tcpAddr: "127.0.0.1:0", tlsClientCA: "ca.pem"}), want: "the daemon can never connect"},
		{name: "daemon's certificate without client CA", o: full(serveOptions{tcpAddr: "127.0.0.1:0", tlsDaemonCert: "d.pem", tlsDaemonKey: "d-key.pem"}), want: "checked only with --tls-client-ca"},
		{name: "daemon's certificate without key", o: full(serveOptions{tcpAddr: "127.0.0.1:0", tlsClientCA: "ca.pem", tlsDaemonCert: "d.pem"}), want: "go together"},
		{name: "daemon's key without certificate", o: full(serveOptions{tcpAddr: "127.0.0.1:0", tlsClientCA: "ca.pem", tlsDaemonKey: "d-key.pem"}), want: "go together"},
		{name: "mutual TLS", o: full(serveOptions{tcpAddr: "127.0.0.1:0", tlsClientCA: "ca.pem", tlsDaemonCert: "d.pem", tlsDaemonKey: "d-key.pem"})},
		{name: "mutual TLS verified", o: full(serveOptions{tcpAddr: "0.0.0.0:0", tlsClientCA: "ca.pem", tlsDaemonCA: "ca.pem", tlsDaemonCert: "d.pem", tlsDaemonKey: "d-key.pem"})},
		{name: "activated TCP, nothing", activatedTCP: true, want: "or --insecure for plain HTTP"},
		{name: "activated TCP insecure", o: serveOptions{insecure: true}, activatedTCP: true},
		{name: "activated TCP with TLS", o: full(serveOptions{}), activatedTCP: true},
		{name: "activated TCP with a client CA", o: full(serveOptions{tlsClientCA: "ca.pem"}), activatedTCP: true},
		{name: "activated TCP with a daemon CA", o: full(serveOptions{tlsDaemonCA: "ca.pem"}), activatedTCP: true, want: "name them in the spec file you write"},
		{name: "activated TCP with the daemon's certificate", o: full(serveOptions{tlsClientCA: "ca.pem", tlsDaemonCert: "d.pem", tlsDaemonKey: "d-key.pem"}), activatedTCP: true, want: "name them in the spec file you write"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tc, err := c.o.transportTLS(c.activatedTCP)
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %v, want refusal %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if (tc != nil) != (c.o.tlsCert != "") {
				t.Fatalf("TLS settings %+v for %+v", tc, c.o)
			}
			if tc != nil && (tc.CertFile != c.o.tlsCert || tc.ClientCAFile != c.o.tlsClientCA || tc.DaemonCAFile != c.o.tlsDaemonCA ||
				tc.DaemonCertFile != c.o.tlsDaemonCert || tc.DaemonKeyFile != c.o.tlsDaemonKey) {
				t.Fatalf("flags dropped: %+v from %+v", tc, c.o)
			}
		})
	}
}

// certs is a CA, a server certificate for hosts and a daemon client
// certificate, in files.
type certs struct{ ca, cert, key, daemonCert, daemonKey string }

func newCerts(t *testing.T, hosts ...string) certs {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, hosts []string) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(key)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kd)
	}
	c := certs{ca: write("ca.pem", "CERTIFICATE", caDER)}
	c.cert, c.key = issue("server", 2, x509.ExtKeyUsageServerAuth, hosts)
	c.daemonCert, c.daemonKey = issue("daemon", 3, x509.ExtKeyUsageClientAuth, nil)
	return c
}

// The binary serves mutual TLS from its flags, and the spec file it writes
// lets a client that reads it as the daemon does activate the plugin.
func TestServeTLSThroughTheBinary(t *testing.T) {
	for _, c := range []struct {
		name, addr, certHost, specHost string
	}{
		{"IP", "127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
		{"wildcard, certificate for localhost", "0.0.0.0:0", "localhost", "localhost"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pki := newCerts(t, c.certHost)
			spec, state := shortDir(t), shortDir(t)
			p := startBinary(t, nil, nil, "serve", "dockplug-ipam=iptls", "--state-dir", state, "--spec-dir", spec,
				"--tcp-addr", c.addr, "--tls-cert", pki.cert, "--tls-key", pki.key, "--tls-client-ca", pki.ca,
				"--tls-daemon-ca", pki.ca, "--tls-daemon-cert", pki.daemonCert, "--tls-daemon-key", pki.daemonKey)
			reg := &plugin.Registry{SocketDir: shortDir(t), SpecDirs: []string{spec}}
			ctx := context.Background()
			cl, err := reg.Get(ctx, "iptls", ipam.Implements, plugin.WithBackoff(plugin.Backoff{Base: 20 * time.Millisecond, Limit: 20 * time.Second}))
			if err != nil {
				t.Fatalf("activate from the spec file: %v\n%s", err, p.stderr)
			}
			cl.Close()
			f, err := reg.Lookup("iptls")
			if err != nil {
				t.Fatal(err)
			}
			if u, _ := url.Parse(f.Addr); u.Scheme != "https" || u.Hostname() != c.specHost {
				t.Fatalf("spec Addr %s, want https://%s:PORT", f.Addr, c.specHost)
			}
			if f.TLS == nil || f.TLS.CAFile != pki.ca || f.TLS.CertFile != pki.daemonCert || f.TLS.KeyFile != pki.daemonKey {
				t.Fatalf("spec TLSConfig %+v", f.TLS)
			}
			// Without the daemon's client certificate the plugin is closed.
			anon, _ := plugin.NewClient(f.Addr, plugin.WithTLS(&plugin.TLSOptions{CAFile: pki.ca}), plugin.WithBackoff(plugin.Backoff{}))
			if _, err := anon.Activate(ctx); err == nil {
				t.Fatal("activated without a client certificate")
			}
			p.stop(t)
			if _, err := os.Stat(f.Source); !os.IsNotExist(err) {
				t.Fatalf("spec file left after SIGTERM: %v", err)
			}
		})
	}
}

// Refusals reach the operator with their reason, and leave nothing behind.
func TestServeRefusesTLSThatCannotWork(t *testing.T) {
	pki := newCerts(t, "127.0.0.1")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"client CA without the daemon's certificate", []string{"--tcp-addr", "127.0.0.1:0", "--tls-cert", pki.cert, "--tls-key", pki.key, "--tls-client-ca", pki.ca},
			"the daemon can never connect"},
		{"client CA under --insecure", []string{"--tcp-addr", "127.0.0.1:0", "--insecure", "--tls-client-ca", pki.ca}, "cannot go with --tls-client-ca"},
		{"TLS on the unix socket", []string{"--tls-cert", pki.cert, "--tls-key", pki.key}, "TLS applies only to TCP"},
		{"certificate does not cover the spec's host", []string{"--tcp-addr", "localhost:0", "--tls-cert", pki.cert, "--tls-key", pki.key, "--tls-daemon-ca", pki.ca},
			"names localhost, which the server certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec, state, sock := shortDir(t), shortDir(t), shortDir(t)
			args := append([]string{"serve", "dockplug-ipam=iptls", "--state-dir", state, "--spec-dir", spec, "--socket-dir", sock}, c.args...)
			// A refusal comes at once; the bound only stops a binary that
			// started serving instead.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("started serving instead of refusing (%q):\n%s", c.want, out)
			}
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("%v\n%s\nwant refusal %q", err, out, c.want)
			}
			for _, d := range []string{spec, sock} {
				if entries, _ := os.ReadDir(d); len(entries) != 0 {
					t.Errorf("a refused start left %v in %s", entries, d)
				}
			}
		})
	}
}
