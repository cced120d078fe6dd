package plugin

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
)

// The daemon reads a NAME.json spec file with go-connections' rules
// (protocol reference 1.2): a TLSConfig without CAFile skips verification;
// with CAFile the server certificate is verified against it (and the system
// roots) for the host of Addr; CertFile/KeyFile are the client certificate
// it presents. A spec the daemon cannot use is refused at start, not left
// for the daemon to fail on: each combination of transport options either
// works or is an error from NewServer or Listen.

// checkTransport refuses, before anything is opened, the combinations of
// transport options that cannot work or would be silently ignored.
func checkTransport(cfg *Config) error {
	name := cfg.Name
	activatedTCP := cfg.Listener != nil && cfg.Listener.Addr().Network() == "tcp"
	tcp := cfg.TCPAddr != "" || activatedTCP
	t := cfg.TLS
	switch {
	case cfg.Listener != nil && cfg.TCPAddr != "":
		return fmt.Errorf("plugin %s: given both an activated socket and the TCP address %s: use one", name, cfg.TCPAddr)
	case cfg.SocketPath != "" && (cfg.TCPAddr != "" || cfg.Listener != nil):
		return fmt.Errorf("plugin %s: given both the socket path %s and a TCP address or activated socket: use one", name, cfg.SocketPath)
	case !tcp && (t != nil || cfg.Insecure):
		return fmt.Errorf("plugin %s serves a unix socket: TLS and the insecure option apply only to TCP", name)
	case !tcp:
		return nil
	case t == nil && !cfg.Insecure && activatedTCP:
		return fmt.Errorf("plugin %s: the activated TCP socket %s needs TLS, or the explicit insecure option", name, cfg.Listener.Addr())
	case t == nil && !cfg.Insecure:
		return fmt.Errorf("plugin %s: TCP without TLS needs the explicit insecure option", name)
	case t != nil && cfg.Insecure:
		return fmt.Errorf("plugin %s: TLS and the insecure option (plain HTTP) exclude each other", name)
	}
	if cfg.TCPAddr != "" {
		if _, _, err := net.SplitHostPort(cfg.TCPAddr); err != nil {
			return fmt.Errorf("plugin %s: TCP address: %w", name, err)
		}
	}
	if t == nil {
		return nil
	}
	switch {
	case t.CertFile == "" || t.KeyFile == "":
		return fmt.Errorf("plugin %s: TLS needs the server's certificate and its key", name)
	case (t.DaemonCertFile == "") != (t.DaemonKeyFile == ""):
		return fmt.Errorf("plugin %s: the daemon's client certificate and its key go together", name)
	case activatedTCP && (t.DaemonCAFile != "" || t.DaemonCertFile != ""):
		return fmt.Errorf("plugin %s: the server writes no spec file for an activated socket, so the daemon's CA and client certificate would go nowhere: name them in the spec file you write", name)
	case activatedTCP:
		return nil
	case t.ClientCAFile != "" && t.DaemonCertFile == "":
		return fmt.Errorf("plugin %s: the server requires client certificates signed by the client CA, but the spec file gives the daemon none: the daemon could never connect", name)
	case t.ClientCAFile == "" && t.DaemonCertFile != "":
		return fmt.Errorf("plugin %s: without a client CA the server asks for no client certificate, so the daemon's would never be checked", name)
	}
	return nil
}

// serverTLS builds the TLS configuration from cfg.TLS, and returns the
// server's leaf certificate; nil without TLS.
func (s *Server) serverTLS() (*tls.Config, *x509.Certificate, error) {
	t := s.cfg.TLS
	if t == nil {
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("plugin %s: server certificate: %w", s.cfg.Name, err)
	}
	leaf, err := leafOf(cert)
	if err != nil {
		return nil, nil, fmt.Errorf("plugin %s: server certificate %s: %w", s.cfg.Name, t.CertFile, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pool, err := readPool(x509.NewCertPool(), t.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("plugin %s: client CA: %w", s.cfg.Name, err)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, leaf, nil
}

func leafOf(c tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	return x509.ParseCertificate(c.Certificate[0])
}

func intermediates(c tls.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			pool.AddCert(ic)
		}
	}
	return pool
}

func readPool(pool *x509.CertPool, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// specHost is the host the spec file names. It is the host of TCPAddr as
// given: a name stays a name, because the daemon verifies the certificate
// against the host of Addr. A wildcard address (0.0.0.0, ::, or none) is
// reached by the daemon, which reads the spec dir on this host, through the
// loopback: 127.0.0.1, or, with a daemon CA, the first of 127.0.0.1, ::1
// (for an IPv6 wildcard) and localhost that the certificate covers.
func (s *Server) specHost(leaf *x509.Certificate) (string, error) {
	host, _, _ := net.SplitHostPort(s.cfg.TCPAddr) // checked by NewServer
	verify := leaf != nil && s.cfg.TLS.DaemonCAFile != ""
	ip := net.ParseIP(host)
	if host != "" && (ip == nil || !ip.IsUnspecified()) {
		if verify {
			if err := leaf.VerifyHostname(host); err != nil {
				return "", fmt.Errorf("plugin %s: the spec file names %s, which the server certificate %s does not cover (it covers %s): the daemon would refuse it; listen on a name or address the certificate covers",
					s.cfg.Name, host, s.cfg.TLS.CertFile, coverage(leaf))
			}
		}
		return host, nil
	}
	candidates := []string{"127.0.0.1", "::1", "localhost"}
	if ip.To4() != nil { // 0.0.0.0
		candidates = []string{"127.0.0.1", "localhost"}
	}
	if !verify {
		return candidates[0], nil
	}
	for _, c := range candidates {
		if leaf.VerifyHostname(c) == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("plugin %s: %s listens on every address, so the spec file names the loopback, but the server certificate %s covers none of %s (it covers %s): the daemon would refuse it; listen on a name or address the certificate covers, or add 127.0.0.1 to its names",
		s.cfg.Name, s.cfg.TCPAddr, s.cfg.TLS.CertFile, strings.Join(candidates, ", "), coverage(leaf))
}

// coverage lists the names and addresses a certificate is valid for.
func coverage(c *x509.Certificate) string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	if len(out) == 0 {
		return "no name or address"
	}
	return strings.Join(slices.Compact(out), ", ")
}

// checkSpecTLS refuses a spec the daemon could not use: a server
// certificate the daemon CA does not verify, or a daemon client certificate
// the server would not accept. The host is checked by specHost.
func (s *Server) checkSpecTLS(tc *tls.Config, leaf *x509.Certificate) error {
	t := s.cfg.TLS
	if t.DaemonCAFile != "" {
		// The daemon adds the system roots unless ExclusiveRootPools.
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if roots, err = readPool(roots, t.DaemonCAFile); err != nil {
			return fmt.Errorf("plugin %s: daemon CA: %w", s.cfg.Name, err)
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: intermediates(tc.Certificates[0])}
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("plugin %s: the daemon would refuse the server certificate %s (verified against the daemon CA %s): %w",
				s.cfg.Name, t.CertFile, t.DaemonCAFile, err)
		}
	}
	if t.DaemonCertFile != "" {
		dc, err := tls.LoadX509KeyPair(t.DaemonCertFile, t.DaemonKeyFile)
		if err != nil {
			return fmt.Errorf("plugin %s: the daemon's client certificate: %w", s.cfg.Name, err)
		}
		dleaf, err := leafOf(dc)
		if err != nil {
			return fmt.Errorf("plugin %s: the daemon's client certificate %s: %w", s.cfg.Name, t.DaemonCertFile, err)
		}
		// What crypto/tls does with RequireAndVerifyClientCert.
		opts := x509.VerifyOptions{Roots: tc.ClientCAs, Intermediates: intermediates(dc),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if _, err := dleaf.Verify(opts); err != nil {
			return fmt.Errorf("plugin %s: the server would refuse the daemon's client certificate %s (verified against the client CA %s): %w",
				s.cfg.Name, t.DaemonCertFile, t.ClientCAFile, err)
		}
	}
	return nil
}
