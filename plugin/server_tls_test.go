package plugin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
)

// testCA issues certificates for the TLS table.
type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
	n    int64
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{dir: dir, cert: cert, key: key, n: 1}
	ca.file = writePEMFile(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	return ca
}

func writePEMFile(t *testing.T, path, typ string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue writes a certificate for usage covering hosts (IP addresses and
// names), and its key; it returns their files.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage, hosts ...string) (string, string) {
	t.Helper()
	ca.n++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.n), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return writePEMFile(t, filepath.Join(ca.dir, name+".pem"), "CERTIFICATE", der),
		writePEMFile(t, filepath.Join(ca.dir, name+"-key.pem"), "EC PRIVATE KEY", kd)
}

// goConnectionsCiphers is go-connections' tlsconfig default cipher list.
var goConnectionsCiphers = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// daemonActivate reads a NAME.json spec file and sends Plugin.Activate the
// way dockerd does, independently of plugin.Client (protocol reference 1.2;
// moby pkg/plugins readPluginJSONInfo and newTransport, go-connections
// tlsconfig.Client):
//   - a TLSConfig without CAFile gets InsecureSkipVerify;
//   - TLS 1.2 at least, go-connections' cipher list;
//   - with CAFile and verification on, the roots are the system pool plus
//     CAFile (only CAFile with ExclusiveRootPools); the server name is the
//     host of Addr (net/http fills it in);
//   - CertFile or KeyFile set: that client certificate;
//   - the scheme is https only for an https Addr; no TLSConfig means Go's
//     default verification.
//
// dropClientCert leaves the client certificate out, to show that the server
// requires it.
func daemonActivate(specPath string, dropClientCert bool) ([]string, error) {
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return nil, err
	}
	var spec struct {
		Addr      string
		TLSConfig *struct {
			CAFile, CertFile, KeyFile              string
			InsecureSkipVerify, ExclusiveRootPools bool
		}
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, err
	}
	u, err := url.Parse(spec.Addr)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{Proxy: http.ProxyFromEnvironment, DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	if o := spec.TLSConfig; o != nil {
		if o.CAFile == "" {
			o.InsecureSkipVerify = true
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: goConnectionsCiphers, InsecureSkipVerify: o.InsecureSkipVerify}
		if !o.InsecureSkipVerify && o.CAFile != "" {
			pool := x509.NewCertPool()
			if !o.ExclusiveRootPools {
				if pool, err = x509.SystemCertPool(); err != nil {
					return nil, err
				}
			}
			pemData, err := os.ReadFile(o.CAFile)
			if err != nil || !pool.AppendCertsFromPEM(pemData) {
				return nil, fmt.Errorf("CA %s: %v", o.CAFile, err)
			}
			tc.RootCAs = pool
		}
		if (o.CertFile != "" || o.KeyFile != "") && !dropClientCert {
			cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("could not load X509 key pair: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		tr.TLSClientConfig = tc
	}
	scheme := "http"
	if u.Scheme == "https" {
		scheme = "https"
	}
	req, _ := http.NewRequest(http.MethodPost, scheme+"://"+u.Host+"/Plugin.Activate", nil)
	req.Header.Set("Accept", plugin.MediaType)
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var m plugin.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	return m.Implements, nil
}

// Every combination of transport and TLS options either works — proved by
// activating the plugin from its spec file as the daemon would — or is
// refused at start with a message saying why.
func TestTLSCombinationsWorkOrAreRefused(t *testing.T) {
	dir := t.TempDir()
	ca, other := newTestCA(t, dir, "ca"), newTestCA(t, dir, "other-ca")
	srvIP, srvIPKey := ca.issue(t, "srv-ip", x509.ExtKeyUsageServerAuth, "127.0.0.1")
	srvIP6, srvIP6Key := ca.issue(t, "srv-ip6", x509.ExtKeyUsageServerAuth, "::1")
	srvName, srvNameKey := ca.issue(t, "srv-name", x509.ExtKeyUsageServerAuth, "localhost")
	srvFar, srvFarKey := ca.issue(t, "srv-far", x509.ExtKeyUsageServerAuth, "plugin.example.com", "192.0.2.10")
	srvStranger, srvStrangerKey := other.issue(t, "srv-stranger", x509.ExtKeyUsageServerAuth, "127.0.0.1")
	srvNotServer, srvNotServerKey := ca.issue(t, "srv-not-server", x509.ExtKeyUsageClientAuth, "127.0.0.1")
	dmn, dmnKey := ca.issue(t, "daemon", x509.ExtKeyUsageClientAuth)
	dmnStranger, dmnStrangerKey := other.issue(t, "daemon-stranger", x509.ExtKeyUsageClientAuth)
	dmnNotClient, dmnNotClientKey := ca.issue(t, "daemon-not-client", x509.ExtKeyUsageServerAuth)
	ipv6 := true
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		ipv6 = false
	} else {
		ln.Close()
	}

	type tl = plugin.ServerTLS
	for _, c := range []struct {
		name     string
		addr     string // TCPAddr; "" with activate "" is the unix socket
		activate string // "tcp" or "unix": an activated listener instead
		tls      *tl
		insecure bool
		want     string // "": works; else the refusal says this
		host     string // the host the spec file's Addr names
		mutual   bool   // the server refuses a client without certificate
		needIPv6 bool
	}{
		// Plain TCP.
		{name: "tcp without TLS or insecure", addr: "127.0.0.1:0", want: "needs the explicit insecure option"},
		{name: "insecure", addr: "127.0.0.1:0", insecure: true, host: "127.0.0.1"},
		{name: "insecure on a wildcard", addr: "0.0.0.0:0", insecure: true, host: "127.0.0.1"},
		{name: "insecure on a name", addr: "localhost:0", insecure: true, host: "localhost"},
		{name: "insecure with a certificate", addr: "127.0.0.1:0", insecure: true, tls: &tl{CertFile: srvIP, KeyFile: srvIPKey}, want: "exclude each other"},
		{name: "insecure with a client CA", addr: "127.0.0.1:0", insecure: true, tls: &tl{ClientCAFile: ca.file}, want: "exclude each other"},
		{name: "bad address", addr: "127.0.0.1", insecure: true, want: "TCP address"},

		// The server's certificate.
		{name: "client CA without certificate", addr: "127.0.0.1:0", tls: &tl{ClientCAFile: ca.file}, want: "certificate and its key"},
		{name: "certificate without key", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP}, want: "certificate and its key"},
		{name: "daemon CA without certificate", addr: "127.0.0.1:0", tls: &tl{DaemonCAFile: ca.file}, want: "certificate and its key"},
		{name: "certificate, daemon skips verification", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey}, host: "127.0.0.1"},
		{name: "unverified: the host need not be covered", addr: "localhost:0", tls: &tl{CertFile: srvFar, KeyFile: srvFarKey}, host: "localhost"},
		{name: "unverified wildcard", addr: "0.0.0.0:0", tls: &tl{CertFile: srvFar, KeyFile: srvFarKey}, host: "127.0.0.1"},

		// The daemon verifies the server against --tls-daemon-ca and Addr's host.
		{name: "verified IP", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, DaemonCAFile: ca.file}, host: "127.0.0.1"},
		{name: "verified name", addr: "localhost:0", tls: &tl{CertFile: srvName, KeyFile: srvNameKey, DaemonCAFile: ca.file}, host: "localhost"},
		{name: "verified IPv6", addr: "[::1]:0", tls: &tl{CertFile: srvIP6, KeyFile: srvIP6Key, DaemonCAFile: ca.file}, host: "::1", needIPv6: true},
		{name: "name not covered", addr: "localhost:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, DaemonCAFile: ca.file}, want: "names localhost, which the server certificate"},
		{name: "IP not covered", addr: "127.0.0.1:0", tls: &tl{CertFile: srvName, KeyFile: srvNameKey, DaemonCAFile: ca.file}, want: "names 127.0.0.1, which the server certificate"},
		{name: "wildcard, certificate for 127.0.0.1", addr: "0.0.0.0:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, DaemonCAFile: ca.file}, host: "127.0.0.1"},
		{name: "wildcard, certificate for localhost", addr: "0.0.0.0:0", tls: &tl{CertFile: srvName, KeyFile: srvNameKey, DaemonCAFile: ca.file}, host: "localhost"},
		{name: "IPv6 wildcard, certificate for ::1", addr: "[::]:0", tls: &tl{CertFile: srvIP6, KeyFile: srvIP6Key, DaemonCAFile: ca.file}, host: "::1", needIPv6: true},
		{name: "no host, certificate for 127.0.0.1", addr: ":0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, DaemonCAFile: ca.file}, host: "127.0.0.1"},
		{name: "wildcard, certificate for no loopback", addr: "0.0.0.0:0", tls: &tl{CertFile: srvFar, KeyFile: srvFarKey, DaemonCAFile: ca.file}, want: "covers none of 127.0.0.1, localhost (it covers plugin.example.com, 192.0.2.10)"},
		{name: "IPv4 wildcard, certificate for ::1 only", addr: "0.0.0.0:0", tls: &tl{CertFile: srvIP6, KeyFile: srvIP6Key, DaemonCAFile: ca.file}, want: "covers none of 127.0.0.1, localhost"},
		{name: "server certificate from another CA", addr: "127.0.0.1:0", tls: &tl{CertFile: srvStranger, KeyFile: srvStrangerKey, DaemonCAFile: ca.file}, want: "the daemon would refuse the server certificate"},
		{name: "server certificate not for servers", addr: "127.0.0.1:0", tls: &tl{CertFile: srvNotServer, KeyFile: srvNotServerKey, DaemonCAFile: ca.file}, want: "the daemon would refuse the server certificate"},
		{name: "daemon CA file missing", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, DaemonCAFile: filepath.Join(dir, "nope.pem")}, want: "daemon CA"},

		// Mutual TLS: the server checks the daemon's client certificate.
		{name: "client CA without the daemon's certificate", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, ClientCAFile: ca.file}, want: "the daemon could never connect"},
		{name: "daemon's certificate without client CA", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, DaemonCertFile: dmn, DaemonKeyFile: dmnKey}, want: "would never be checked"},
		{name: "daemon's certificate without its key", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, ClientCAFile: ca.file, DaemonCertFile: dmn}, want: "go together"},
		{name: "daemon's certificate from another CA", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, ClientCAFile: ca.file, DaemonCertFile: dmnStranger, DaemonKeyFile: dmnStrangerKey}, want: "the server would refuse the daemon's client certificate"},
		{name: "daemon's certificate not for clients", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, ClientCAFile: ca.file, DaemonCertFile: dmnNotClient, DaemonKeyFile: dmnNotClientKey}, want: "the server would refuse the daemon's client certificate"},
		{name: "mutual, unverified server", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, ClientCAFile: ca.file, DaemonCertFile: dmn, DaemonKeyFile: dmnKey}, host: "127.0.0.1", mutual: true},
		{name: "mutual, verified server", addr: "127.0.0.1:0", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, ClientCAFile: ca.file, DaemonCAFile: ca.file, DaemonCertFile: dmn, DaemonKeyFile: dmnKey}, host: "127.0.0.1", mutual: true},
		{name: "mutual on a wildcard", addr: "0.0.0.0:0", tls: &tl{CertFile: srvName, KeyFile: srvNameKey, ClientCAFile: ca.file, DaemonCAFile: ca.file, DaemonCertFile: dmn, DaemonKeyFile: dmnKey}, host: "localhost", mutual: true},

		// A unix socket has no TLS.
		{name: "unix socket with TLS", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey}, want: "apply only to TCP"},
		{name: "unix socket with a client CA", tls: &tl{ClientCAFile: ca.file}, want: "apply only to TCP"},
		{name: "unix socket insecure", insecure: true, want: "apply only to TCP"},

		// Socket activation: the operator writes the spec file.
		{name: "activated TCP without TLS or insecure", activate: "tcp", want: "needs TLS"},
		{name: "activated TCP insecure", activate: "tcp", insecure: true},
		{name: "activated TCP with TLS", activate: "tcp", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey}},
		{name: "activated TCP with a client CA", activate: "tcp", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, ClientCAFile: ca.file}, mutual: true},
		{name: "activated TCP with a daemon CA", activate: "tcp", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, DaemonCAFile: ca.file}, want: "no spec file"},
		{name: "activated TCP with the daemon's certificate", activate: "tcp", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey, ClientCAFile: ca.file, DaemonCertFile: dmn, DaemonKeyFile: dmnKey}, want: "no spec file"},
		{name: "activated TCP and a TCP address", activate: "tcp", addr: "127.0.0.1:0", insecure: true, want: "use one"},
		{name: "activated unix with TLS", activate: "unix", tls: &tl{CertFile: srvIP, KeyFile: srvIPKey}, want: "apply only to TCP"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.needIPv6 && !ipv6 {
				t.Skip("no IPv6 loopback")
			}
			specDir, sockDir := shortDir(t), shortDir(t)
			cfg := plugin.Config{Name: "tls", TCPAddr: c.addr, TLS: c.tls, Insecure: c.insecure, SpecDir: specDir, SocketDir: sockDir}
			switch c.activate {
			case "tcp":
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				cfg.Listener = ln
			case "unix":
				ln, err := net.Listen("unix", filepath.Join(sockDir, "act.sock"))
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				cfg.Listener = ln
			}
			srv, err := plugin.NewServer(cfg, newKind("VolumeDriver"))
			if err == nil {
				if err = srv.Listen(); err != nil {
					srv = nil
				}
			}
			specPath := filepath.Join(specDir, "tls.json")
			if c.want != "" {
				if err == nil {
					srv.Close()
					t.Fatalf("started; want refusal %q", c.want)
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Fatalf("refused with %q, want %q", err, c.want)
				}
				if _, serr := os.Stat(specPath); !os.IsNotExist(serr) {
					t.Fatal("a refused start left a spec file")
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
				if _, err := os.Stat(specPath); !os.IsNotExist(err) {
					t.Error("spec file left after shutdown")
				}
			}()
			use := specPath // the spec file the daemon reads
			if c.activate != "" {
				// The spec file an operator would write for the socket.
				spec := plugin.SpecFile{Addr: "tcp://" + cfg.Listener.Addr().String()}
				if c.tls != nil {
					spec.Addr = "https://" + cfg.Listener.Addr().String()
					spec.TLSConfig = &plugin.TLSOptions{CAFile: ca.file}
					if c.mutual {
						spec.TLSConfig.CertFile, spec.TLSConfig.KeyFile = dmn, dmnKey
					}
				}
				data, _ := json.Marshal(spec)
				use = filepath.Join(sockDir, "operator.json")
				os.WriteFile(use, data, 0o644)
				if _, err := os.Stat(specPath); !os.IsNotExist(err) {
					t.Fatal("the server wrote a spec file for an activated socket")
				}
			} else {
				raw, err := os.ReadFile(specPath)
				if err != nil {
					t.Fatal(err)
				}
				var spec plugin.SpecFile
				json.Unmarshal(raw, &spec)
				u, _ := url.Parse(spec.Addr)
				if u.Hostname() != c.host {
					t.Fatalf("spec names %s, want host %s:\n%s", spec.Addr, c.host, raw)
				}
				if wantScheme := map[bool]string{true: "https", false: "tcp"}[c.tls != nil]; u.Scheme != wantScheme {
					t.Fatalf("spec Addr %s, want scheme %s", spec.Addr, wantScheme)
				}
			}
			impl, err := daemonActivate(use, false)
			if err != nil || len(impl) != 1 || impl[0] != "VolumeDriver" {
				raw, _ := os.ReadFile(use)
				t.Fatalf("the daemon could not use the spec: %v %v\n%s", impl, err, raw)
			}
			if c.mutual {
				if _, err := daemonActivate(use, true); err == nil {
					t.Fatal("activated without a client certificate: the client CA is not in force")
				}
			}
		})
	}
}
