package plugin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxBodyBytes    = 16 << 20 // authz bodies reach 4 MiB before base64 (G14)
	DefaultShutdownTimeout = 8 * time.Second
)

// Config says where and how a Server listens. Exactly one transport is used:
// Listener if set (systemd socket activation), else TCPAddr if set, else
// the unix socket SocketPath, or SocketDir/Name.sock.
type Config struct {
	// Name is the plugin name users give to -d / --volume-driver.
	Name string

	// SocketDir holds NAME.sock; created if missing. Default DefaultSocketDir.
	SocketDir string
	// SocketPath, when set, is the unix socket's full path instead of
	// SocketDir/NAME.sock: for a socket the daemon must not discover, such
	// as one serving operator-only methods.
	SocketPath string
	// SocketMode is the socket's permission bits. Default 0660. A directory
	// the server creates for the socket is 0755, or 0700 for a mode that
	// grants nothing to group and others.
	SocketMode fs.FileMode
	// SocketGroup, a group name or numeric GID, owns the socket.
	// Empty leaves the process's group (G16).
	SocketGroup string

	// TCPAddr (host:port) serves over TCP instead. It needs TLS, or
	// Insecure for plain HTTP (not both); a spec file SpecDir/NAME.json
	// tells the daemon where to connect. The spec names the host as given
	// here (the daemon verifies the certificate against it), or 127.0.0.1
	// for a wildcard host (see ServerTLS). TLS and Insecure also apply to a
	// TCP Listener, and are refused for a unix socket.
	TCPAddr  string
	TLS      *ServerTLS
	Insecure bool
	// SpecDir holds NAME.json for TCP. Default DefaultSpecDir.
	SpecDir string

	// Listener is an already-open listener (socket activation). The Server
	// neither creates nor removes any file for it.
	Listener net.Listener

	Logger          *slog.Logger // default: discard
	Metrics         *Metrics     // nil: no metrics
	MaxBodyBytes    int64        // default DefaultMaxBodyBytes
	ShutdownTimeout time.Duration
}

// ServerTLS is the TLS setup of a TCP server and what the daemon needs to
// talk to it, which is written into the spec file. Listen refuses a spec
// the daemon could not use, so that each combination works or fails at
// start:
//   - CertFile and KeyFile are required.
//   - ClientCAFile requires DaemonCertFile/DaemonKeyFile, a pair the client
//     CA verifies for client authentication; and those require ClientCAFile
//     (without it they would never be checked).
//   - With DaemonCAFile, the daemon CA (and the system roots, as the daemon
//     adds them) must verify the server certificate, and the certificate
//     must cover the host the spec names. For a wildcard TCPAddr that is
//     the first of 127.0.0.1, ::1 (IPv6 wildcard only) and localhost the
//     certificate covers.
//   - For an activated Listener no spec file is written: DaemonCAFile,
//     DaemonCertFile and DaemonKeyFile are refused there.
type ServerTLS struct {
	CertFile, KeyFile string // the server's certificate
	// ClientCAFile, when set, makes the server require client certificates
	// signed by it.
	ClientCAFile string
	// DaemonCAFile verifies the server (spec CAFile); empty makes the daemon
	// skip verification. DaemonCertFile/DaemonKeyFile are the client
	// certificate the daemon presents (spec CertFile/KeyFile).
	DaemonCAFile, DaemonCertFile, DaemonKeyFile string
}

// Server serves one or more plugin kinds under one plugin name.
type Server struct {
	cfg      Config
	log      *slog.Logger
	routes   map[string]*route
	activate []byte
	unknown  *route // metrics bucket for unknown methods

	inflight sync.WaitGroup // calls being answered

	mu       sync.Mutex
	ln       net.Listener
	addr     string
	cleanup  []func()
	listened bool
}

type route struct {
	name string
	fn   Method
	obs  *methodMetrics
}

// NewServer validates cfg and registers the kinds' methods.
func NewServer(cfg Config, kinds ...Kind) (*Server, error) {
	if cfg.Name == "" {
		return nil, errors.New("plugin server: no plugin name")
	}
	if err := validName(cfg.Name); err != nil {
		return nil, err
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("plugin %s: serves no kind", cfg.Name)
	}
	if err := checkTransport(&cfg); err != nil {
		return nil, err
	}
	if cfg.SocketDir == "" {
		cfg.SocketDir = DefaultSocketDir
	}
	if cfg.SocketMode == 0 {
		cfg.SocketMode = 0o660
	}
	if cfg.SocketMode&^fs.ModePerm != 0 {
		return nil, fmt.Errorf("plugin %s: socket mode %v: only permission bits", cfg.Name, cfg.SocketMode)
	}
	if cfg.SpecDir == "" {
		cfg.SpecDir = DefaultSpecDir
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("plugin", cfg.Name), routes: map[string]*route{}}
	var impl []string
	for _, k := range kinds {
		impl = append(impl, k.Implements())
		for name, fn := range k.Methods() {
			if _, dup := s.routes[name]; dup {
				return nil, fmt.Errorf("plugin %s: method %s registered twice", cfg.Name, name)
			}
			s.routes[name] = &route{name: name, fn: fn, obs: cfg.Metrics.method(cfg.Name, name)}
		}
	}
	var err error
	if s.activate, err = json.Marshal(Manifest{Implements: impl}); err != nil {
		return nil, err
	}
	s.routes["Plugin.Activate"] = &route{name: "Plugin.Activate", obs: cfg.Metrics.method(cfg.Name, "Plugin.Activate")}
	s.unknown = &route{name: "unknown", obs: cfg.Metrics.method(cfg.Name, "unknown")}
	return s, nil
}

func validName(name string) error {
	if name == "." || name == ".." || filepath.Base(name) != name {
		return fmt.Errorf("plugin name %q: must be a plain file name", name)
	}
	return nil
}

// Name is the plugin name.
func (s *Server) Name() string { return s.cfg.Name }

// Addr is the address the daemon reaches the plugin at, once listening.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Listen opens the listener and writes the files the daemon discovers the
// plugin by. Serve calls it if it has not been called; calling it first lets
// a caller know the plugin is reachable before serving starts.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listened {
		return nil
	}
	var err error
	switch {
	case s.cfg.Listener != nil:
		err = s.useListener()
	case s.cfg.TCPAddr != "":
		err = s.listenTCP()
	default:
		err = s.listenUnix()
	}
	if err != nil {
		s.runCleanup()
		return err
	}
	s.listened = true
	return nil
}

func (s *Server) listenUnix() error {
	path := s.cfg.SocketPath
	if path == "" {
		path = filepath.Join(s.cfg.SocketDir, s.cfg.Name+".sock")
	}
	dirMode := fs.FileMode(0o755)
	if s.cfg.SocketMode&0o077 == 0 {
		dirMode = 0o700
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return fmt.Errorf("plugin %s: socket dir: %w", s.cfg.Name, err)
	}
	if len(path) >= maxUnixPath {
		return fmt.Errorf("plugin %s: unix socket path %q is too long", s.cfg.Name, path)
	}
	if _, err := os.Lstat(path); err == nil {
		// A socket someone answers on is a running plugin; one nobody
		// answers on is left over from a crash and would stall the
		// daemon for 15 s per scan (G3).
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("plugin %s is already running (socket %s answers)", s.cfg.Name, path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("plugin %s: remove stale socket: %w", s.cfg.Name, err)
		}
		s.log.Info("removed stale socket", "path", path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("plugin %s: listen: %w", s.cfg.Name, err)
	}
	// net.UnixListener unlinks its socket when closed, which Shutdown does
	// first thing; removing the path again later could delete the socket
	// of a successor started in between.
	s.ln = ln
	if err := os.Chmod(path, s.cfg.SocketMode); err != nil {
		return fmt.Errorf("plugin %s: chmod socket: %w", s.cfg.Name, err)
	}
	if s.cfg.SocketGroup != "" {
		gid, err := lookupGroup(s.cfg.SocketGroup)
		if err != nil {
			return fmt.Errorf("plugin %s: socket group: %w", s.cfg.Name, err)
		}
		if err := os.Chown(path, -1, gid); err != nil {
			return fmt.Errorf("plugin %s: chown socket: %w", s.cfg.Name, err)
		}
	}
	s.addr = "unix://" + path
	return nil
}

func lookupGroup(g string) (int, error) {
	if gid, err := strconv.Atoi(g); err == nil {
		return gid, nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(grp.Gid)
}

// useListener adopts a socket-activated listener. A TCP one gets the same
// rule as a TCP address: TLS, or plain HTTP only when explicitly insecure
// (checked by NewServer).
func (s *Server) useListener() error {
	s.ln = s.cfg.Listener
	s.addr = s.ln.Addr().Network() + "://" + s.ln.Addr().String()
	if s.ln.Addr().Network() != "tcp" {
		return nil
	}
	tc, _, err := s.serverTLS()
	if err != nil {
		return err
	}
	if tc != nil {
		s.ln = tls.NewListener(s.ln, tc)
		s.addr = "https://" + s.ln.Addr().String()
	}
	return nil
}

func (s *Server) listenTCP() error {
	tc, leaf, err := s.serverTLS()
	if err != nil {
		return err
	}
	host, err := s.specHost(leaf)
	if err != nil {
		return err
	}
	if tc != nil {
		if err := s.checkSpecTLS(tc, leaf); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", s.cfg.TCPAddr)
	if err != nil {
		return fmt.Errorf("plugin %s: listen: %w", s.cfg.Name, err)
	}
	s.ln = ln
	spec := SpecFile{Name: s.cfg.Name}
	dial := net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	if tc != nil {
		s.ln = tls.NewListener(ln, tc)
		spec.Addr = "https://" + dial
		t := s.cfg.TLS
		spec.TLSConfig = &TLSOptions{CAFile: t.DaemonCAFile, CertFile: t.DaemonCertFile, KeyFile: t.DaemonKeyFile,
			InsecureSkipVerify: t.DaemonCAFile == ""}
	} else {
		spec.Addr = "tcp://" + dial
	}
	s.addr = spec.Addr
	if err := os.MkdirAll(s.cfg.SpecDir, 0o755); err != nil {
		return fmt.Errorf("plugin %s: spec dir: %w", s.cfg.Name, err)
	}
	path := filepath.Join(s.cfg.SpecDir, s.cfg.Name+".json")
	data, _ := json.MarshalIndent(spec, "", "  ")
	if err := writeFileAtomic(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("plugin %s: write spec: %w", s.cfg.Name, err)
	}
	s.cleanup = append(s.cleanup, func() { os.Remove(path) })
	return nil
}

func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// runCleanup removes the files Listen made, in reverse order. mu is held.
func (s *Server) runCleanup() {
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	s.cleanup = nil
	if s.ln != nil && s.cfg.Listener == nil {
		s.ln.Close()
	}
}

// Close releases what Listen made (listener, socket or spec file) when
// Serve will not be called, e.g. because a sibling plugin failed to start.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runCleanup()
}

// Serve serves until ctx is cancelled, then stops accepting, lets in-flight
// calls finish for up to ShutdownTimeout (after which their contexts are
// cancelled), and removes the socket or spec file.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	base, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()
	hs := &http.Server{
		Handler:     s,
		BaseContext: func(net.Listener) context.Context { return base },
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.ln.Addr().Network() == "tcp" {
		// Bound slow clients on the network. Not on the unix socket, which
		// only root and the socket group reach: the deadline timer costs
		// an idle plugin ~4 µs of CPU per call (bench/sdk).
		hs.ReadHeaderTimeout = 30 * time.Second
	}
	s.log.Info("serving", "addr", s.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(s.ln) }()
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("plugin %s: serve: %w", s.cfg.Name, err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		if serr := hs.Shutdown(sctx); serr != nil {
			s.log.Warn("in-flight calls did not finish in time; cancelling them", "timeout", s.cfg.ShutdownTimeout)
			cancelCalls()
			hs.Close()
			// Close does not wait for handlers: give the cancelled calls a
			// moment, so the caller does not close state under them.
			done := make(chan struct{})
			go func() { s.inflight.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				s.log.Error("calls still running after their contexts were cancelled")
			}
		}
		cancel()
	}
	s.mu.Lock()
	s.runCleanup()
	s.mu.Unlock()
	s.log.Info("stopped")
	return err
}
