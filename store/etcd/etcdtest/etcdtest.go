// Package etcdtest runs a real etcd server in-process (the server of
// go.etcd.io/etcd/server/v3/embed) for tests: loopback only, free ports, a
// temporary data dir, logs discarded. Start runs a single member,
// StartCluster a cluster of several. A member can be stopped and restarted
// on the same data dir and ports, to test clients across an etcd restart.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Server is an embedded etcd member.
type Server struct {
	tb      testing.TB
	name    string
	cluster string // initial cluster: name=peer URL,...
	dir     string
	client  url.URL
	peer    url.URL
	noFsync bool
	tls     *transport.TLSInfo

	mu sync.Mutex
	e  *embed.Etcd
}

// Option configures Start.
type Option func(*Server)

// WithoutFsync disables fsync (etcd's --unsafe-no-fsync): faster, and still
// durable across Stop/Restart, which close the server cleanly.
func WithoutFsync() Option { return func(s *Server) { s.noFsync = true } }

// WithTLS serves clients over TLS with the server certificate
// certFile/keyFile; with caFile set, clients must present a certificate
// signed by it (mutual TLS).
func WithTLS(certFile, keyFile, caFile string) Option {
	return func(s *Server) {
		s.tls = &transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: caFile, ClientCertAuth: caFile != ""}
	}
}

// Start starts a server and stops it when the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := &Server{tb: tb, dir: tb.TempDir()}
	for _, o := range opts {
		o(s)
	}
	s.client = url.URL{Scheme: "http", Host: freeAddr(tb)}
	if s.tls != nil {
		s.client.Scheme = "https"
	}
	s.peer = url.URL{Scheme: "http", Host: freeAddr(tb)}
	if err := s.start(); err != nil {
		tb.Fatalf("etcdtest: start: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartCluster starts a cluster of n members (n odd for a majority that
// survives one member down) and stops it when the test ends.
func StartCluster(tb testing.TB, n int, opts ...Option) []*Server {
	tb.Helper()
	members := make([]*Server, n)
	var initial []string
	for i := range members {
		s := &Server{tb: tb, dir: tb.TempDir(), name: fmt.Sprintf("m%d", i)}
		for _, o := range opts {
			o(s)
		}
		s.client = url.URL{Scheme: "http", Host: freeAddr(tb)}
		if s.tls != nil {
			s.client.Scheme = "https"
		}
		s.peer = url.URL{Scheme: "http", Host: freeAddr(tb)}
		initial = append(initial, s.name+"="+s.peer.String())
		members[i] = s
	}
	// Each member is ready only once a majority runs: start them together.
	errs := make(chan error, n)
	for _, s := range members {
		s.cluster = strings.Join(initial, ",")
		go func() { errs <- s.start() }()
	}
	for range members {
		if err := <-errs; err != nil {
			for _, s := range members {
				s.Stop()
			}
			tb.Fatalf("etcdtest: start cluster: %v", err)
		}
	}
	for _, s := range members {
		tb.Cleanup(s.Stop)
	}
	return members
}

// ClusterEndpoints are the client URLs of every member.
func ClusterEndpoints(members []*Server) []string {
	var out []string
	for _, s := range members {
		out = append(out, s.Endpoints()...)
	}
	return out
}

// IsLeader reports whether the member runs and is the cluster's leader.
func (s *Server) IsLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.e != nil && s.e.Server.Leader() == s.e.Server.MemberID()
}

// Running reports whether the member runs.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.e != nil
}

func freeAddr(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("etcdtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Endpoints are the client URLs.
func (s *Server) Endpoints() []string { return []string{s.client.String()} }

// DataDir is the member's data directory.
func (s *Server) DataDir() string { return s.dir }

// Client returns a client of the server (plain-text servers only), closed
// when the test ends.
func (s *Server) Client() *clientv3.Client {
	s.tb.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		s.tb.Fatalf("etcdtest: client: %v", err)
	}
	s.tb.Cleanup(func() { cli.Close() })
	return cli
}

// Stop stops the server (no-op if stopped). Clients see it unavailable.
func (s *Server) Stop() {
	s.mu.Lock()
	e := s.e
	s.e = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart stops the server if running and starts it again on the same
// data dir and ports: what it had committed is there again.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	// The ports were just released; another process could take them in
	// the meantime, so retry briefly before failing.
	var err error
	for i := 0; i < 50; i++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.tb.Fatalf("etcdtest: restart: %v", err)
}

func (s *Server) start() error {
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	if s.name != "" {
		cfg.Name = s.name
	}
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.client}
	cfg.AdvertiseClientUrls = []url.URL{s.client}
	cfg.ListenPeerUrls = []url.URL{s.peer}
	cfg.AdvertisePeerUrls = []url.URL{s.peer}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, s.peer.String())
	if s.cluster != "" {
		cfg.InitialCluster = s.cluster
	}
	cfg.InitialClusterToken = "etcdtest"
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.UnsafeNoFsync = s.noFsync
	if s.tls != nil {
		cfg.ClientTLSInfo = *s.tls
	}
	cfg.EnableGRPCGateway = false
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return err
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("not ready after 60s")
	}
	s.mu.Lock()
	s.e = e
	s.mu.Unlock()
	return nil
}

// logger discards etcd's logs unless ETCDTEST_LOG is set, then errors go
// to stderr.
func logger() *zap.Logger {
	if os.Getenv("ETCDTEST_LOG") == "" {
		return zap.NewNop()
	}
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(os.Stderr), zapcore.ErrorLevel))
}
