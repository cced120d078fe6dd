package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store/durable"
)

// pluginDef is one plugin `dockplug serve` knows. cmd is the only place
// that knows every driver; each def turns flags into Kinds.
type pluginDef struct {
	Name     string
	Short    string
	External bool // needs an outside service (etcd, S3): not served by default
	// OptIn plugins are served only when named: an authorization plugin
	// is a security decision (and needs a policy), not a default.
	OptIn bool
	Flags func(fs *pflag.FlagSet) // its own flags, prefixed with its short name
	Open  func(ctx context.Context, env *serveEnv) (*opened, error)
}

// opened is a plugin ready to serve.
type opened struct {
	Kinds []plugin.Kind // served to the daemon on the public socket
	// Admin holds the operator-only methods (dockplug ipam, dockplug
	// volume). They are not part of the protocol the daemon speaks, so
	// they are served on the admin socket only.
	Admin []plugin.Kind
	Close func() error // may be nil
}

// adminSocketName is the admin socket in a plugin's state dir:
// <state-dir>/NAME/admin.sock. It is next to the state it serves (the state
// file admits one process: the admin commands ask that process), in a
// directory of mode 0700, and away from /run/docker/plugins, where the
// daemon would find it, activate it and list it.
const adminSocketName = "admin.sock"

const defaultStateDir = "/var/lib/dockplug"

func adminSocketPath(stateDir, name string) string {
	return filepath.Join(stateDir, name, adminSocketName)
}

// discoverable says whether the daemon would find a socket at path when it
// looks in socketDirs (DIR/X.sock or DIR/X/X.sock).
func discoverable(path string, socketDirs ...string) bool {
	path = filepath.Clean(path)
	dir, base := filepath.Split(path)
	dir = filepath.Clean(dir)
	for _, sd := range socketDirs {
		sd = filepath.Clean(sd)
		if dir == sd || (filepath.Dir(dir) == sd && filepath.Base(dir)+".sock" == base) {
			return true
		}
	}
	return false
}

// catalogue is filled by the plugin_*.go files' init functions.
var catalogue []*pluginDef

func register(d *pluginDef) { catalogue = append(catalogue, d) }

// serveEnv is what a plugin gets from the common flags.
type serveEnv struct {
	StateDir string // this plugin's own directory under --state-dir
	Logger   *slog.Logger
	// Metrics is the registry served at --metrics-addr, labelled with the
	// plugin's name, for a plugin's own metrics.
	Metrics prometheus.Registerer
}

type serveOptions struct {
	config      string
	stateDir    string
	socketDir   string
	specDir     string
	socketGroup string
	metricsAddr string
	logLevel    string
	logFormat   string

	tcpAddr       string
	insecure      bool
	tlsCert       string
	tlsKey        string
	tlsClientCA   string
	tlsDaemonCA   string
	tlsDaemonCert string
	tlsDaemonKey  string
}

func newServeCmd() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve [PLUGIN[=NAME]...]",
		Short: "Serve dockplug plugins to the Docker daemon",
		Long: `Serve one or more plugins from one process, each under its own name and
socket (<socket-dir>/NAME.sock). With no PLUGIN, serves every plugin that
needs no outside service. PLUGIN=NAME serves a plugin under another name
(its state lives in <state-dir>/NAME), e.g. to run two instances.

Every flag can also be set as DOCKPLUG_<FLAG> in the environment (e.g.
DOCKPLUG_STATE_DIR) or as a key in the YAML file given by --config (e.g.
"state-dir: /srv/dockplug"). A flag beats the environment, which beats the file.

Under systemd socket activation (LISTEN_FDS), each plugin takes the socket
whose FileDescriptorName is its name; a single plugin takes a single socket.

The operator commands (dockplug ipam, dockplug volume) reach a plugin on its
admin socket, <state-dir>/NAME/admin.sock (mode 0600), never on the socket
the daemon uses.

--tcp-addr serves one plugin over TCP and writes <spec-dir>/NAME.json for the
daemon. Options that cannot work together are refused at start: TLS flags
without --tcp-addr, --insecure with TLS flags, --tls-client-ca without the
daemon's client certificate (--tls-daemon-cert/--tls-daemon-key) or the
reverse, and with --tls-daemon-ca a server certificate that CA does not
verify or that does not cover the host the spec names.

Plugins:
` + pluginList(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := applyConfig(cmd.Flags(), o.config); err != nil {
				return err
			}
			return runServe(cmd.Context(), o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "YAML file of settings (keys are flag names)")
	f.StringVar(&o.stateDir, "state-dir", defaultStateDir, "directory for plugin state (one subdirectory per plugin, which also holds its admin socket)")
	f.StringVar(&o.socketDir, "socket-dir", plugin.DefaultSocketDir, "directory for plugin sockets (dockerd looks in /run/docker/plugins)")
	f.StringVar(&o.specDir, "spec-dir", plugin.DefaultSpecDir, "directory for TCP spec files (NAME.json)")
	f.StringVar(&o.socketGroup, "socket-group", "", "group (name or GID) owning the daemon's sockets, mode 0660 (the admin socket stays 0600); default: the process's group")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9323)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error (dockerd logs plugin stderr as errors: keep it quiet)")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.StringVar(&o.tcpAddr, "tcp-addr", "", "serve over TCP at HOST:PORT instead of a unix socket (one plugin only); needs --tls-cert/--tls-key or --insecure. The spec file names HOST as given, or the loopback for 0.0.0.0")
	f.BoolVar(&o.insecure, "insecure", false, "serve TCP as plain HTTP, without TLS (no --tls-* flag then)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "server certificate (PEM) for --tcp-addr")
	f.StringVar(&o.tlsKey, "tls-key", "", "server key (PEM) for --tcp-addr")
	f.StringVar(&o.tlsClientCA, "tls-client-ca", "", "require client certificates signed by this CA (needs --tls-daemon-cert/--tls-daemon-key)")
	f.StringVar(&o.tlsDaemonCA, "tls-daemon-ca", "", "CA the daemon verifies the server certificate with, for the spec's host (written to the spec file); empty: the daemon skips verification")
	f.StringVar(&o.tlsDaemonCert, "tls-daemon-cert", "", "client certificate the daemon presents (written to the spec file; needs --tls-client-ca)")
	f.StringVar(&o.tlsDaemonKey, "tls-daemon-key", "", "client key the daemon presents (written to the spec file)")
	for _, d := range catalogue {
		if d.Flags != nil {
			d.Flags(f)
		}
	}
	return cmd
}

func pluginList() string {
	var b strings.Builder
	for _, d := range catalogue {
		ext := ""
		switch {
		case d.External:
			ext = " (needs an outside service; not served by default)"
		case d.OptIn:
			ext = " (served only when named)"
		}
		fmt.Fprintf(&b, "  %-18s %s%s\n", d.Name, d.Short, ext)
	}
	if b.Len() == 0 {
		return "  (none built in)\n"
	}
	return b.String()
}

// served is one plugin to serve, under its own or a given name.
type served struct {
	def  *pluginDef
	name string
}

func selectPlugins(args []string) ([]served, error) {
	if len(args) == 0 {
		var out []served
		for _, d := range catalogue {
			if !d.External && !d.OptIn {
				out = append(out, served{d, d.Name})
			}
		}
		if len(out) == 0 {
			return nil, errors.New("no plugin to serve")
		}
		return out, nil
	}
	var out []served
	for _, a := range args {
		kind, name, renamed := strings.Cut(a, "=")
		if !renamed {
			name = kind
		}
		i := slices.IndexFunc(catalogue, func(d *pluginDef) bool { return d.Name == kind })
		if i < 0 {
			return nil, fmt.Errorf("unknown plugin %q; known plugins:\n%s", kind, pluginList())
		}
		if name == "" || slices.ContainsFunc(out, func(s served) bool { return s.name == name }) {
			return nil, fmt.Errorf("plugin name %q given twice or empty", name)
		}
		out = append(out, served{catalogue[i], name})
	}
	return out, nil
}

func runServe(ctx context.Context, o *serveOptions, names []string) error {
	log, err := newLogger(os.Stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	toServe, err := selectPlugins(names)
	if err != nil {
		return err
	}
	if o.tcpAddr != "" && len(toServe) != 1 {
		return errors.New("--tcp-addr serves exactly one plugin: name it")
	}
	activated, err := activationListeners(toServe)
	if err != nil {
		return err
	}
	activatedTCP := false
	for _, ln := range activated {
		activatedTCP = activatedTCP || ln.Addr().Network() == "tcp"
	}
	if o.tcpAddr != "" && len(activated) > 0 {
		return errors.New("--tcp-addr and socket activation both give the plugin a socket: use one")
	}
	tlsCfg, err := o.transportTLS(activatedTCP)
	if err != nil {
		return err
	}

	for _, sv := range toServe {
		if path := adminSocketPath(o.stateDir, sv.name); discoverable(path, o.socketDir, plugin.DefaultSocketDir) {
			return fmt.Errorf("plugin %s: its admin socket %s would be found by the daemon in its socket dir: choose a --state-dir outside it", sv.name, path)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := plugin.NewMetrics(reg)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var servers []*plugin.Server
	var closers []func() error
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil {
				log.Error("close plugin", "err", err)
			}
		}
	}
	fail := func(err error) error {
		for _, s := range servers {
			s.Close()
		}
		cleanup()
		return err
	}
	for _, sv := range toServe {
		env := &serveEnv{StateDir: filepath.Join(o.stateDir, sv.name), Logger: log.With("plugin", sv.name),
			Metrics: prometheus.WrapRegistererWith(prometheus.Labels{"plugin": sv.name}, reg)}
		if err := durable.MkdirAll(env.StateDir, 0o700); err != nil {
			return fail(fmt.Errorf("plugin %s: state dir: %w", sv.name, err))
		}
		op, err := sv.def.Open(ctx, env)
		if err != nil {
			return fail(fmt.Errorf("plugin %s: %w", sv.name, err))
		}
		if op.Close != nil {
			closers = append(closers, op.Close)
		}
		cfg := plugin.Config{
			Name: sv.name, SocketDir: o.socketDir, SocketGroup: o.socketGroup,
			TCPAddr: o.tcpAddr, SpecDir: o.specDir,
			Listener: activated[sv.name], Logger: log, Metrics: metrics,
		}
		if ln := cfg.Listener; o.tcpAddr != "" || ln != nil && ln.Addr().Network() == "tcp" {
			// TLS is for TCP: activated unix sockets next to a TCP one go without.
			cfg.TLS, cfg.Insecure = tlsCfg, o.insecure
		}
		srv, err := plugin.NewServer(cfg, op.Kinds...)
		if err != nil {
			return fail(err)
		}
		if err := srv.Listen(); err != nil {
			return fail(err)
		}
		servers = append(servers, srv)
		if len(op.Admin) == 0 {
			continue
		}
		admin, err := plugin.NewServer(plugin.Config{
			Name: sv.name, SocketPath: adminSocketPath(o.stateDir, sv.name), SocketMode: 0o600,
			Logger: log.With("socket", "admin"),
		}, op.Admin...)
		if err != nil {
			return fail(err)
		}
		if err := admin.Listen(); err != nil {
			return fail(fmt.Errorf("admin socket: %w", err))
		}
		servers = append(servers, admin)
	}

	if o.metricsAddr != "" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return fail(fmt.Errorf("--metrics-addr: %w", err))
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ln)
		defer hs.Close()
		log.Info("metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	}

	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, s := range servers {
		wg.Go(func() {
			if errs[i] = s.Serve(ctx); errs[i] != nil {
				cancel() // one plugin failing stops the process: a supervisor restarts it whole
			}
		})
	}
	wg.Wait()
	cleanup()
	return errors.Join(errs...)
}

// transportTLS turns the TLS flags into the server's TLS settings. It
// refuses, naming the flags, every combination that cannot work or would be
// silently ignored; what depends on the certificates themselves (the host
// the spec names, which CA signed what) is checked by plugin.Server.Listen.
// activatedTCP says a socket-activated TCP socket is served.
func (o *serveOptions) transportTLS(activatedTCP bool) (*plugin.ServerTLS, error) {
	var given []string
	for _, f := range []struct{ flag, v string }{
		{"--tls-cert", o.tlsCert}, {"--tls-key", o.tlsKey}, {"--tls-client-ca", o.tlsClientCA},
		{"--tls-daemon-ca", o.tlsDaemonCA}, {"--tls-daemon-cert", o.tlsDaemonCert}, {"--tls-daemon-key", o.tlsDaemonKey},
	} {
		if f.v != "" {
			given = append(given, f.flag)
		}
	}
	flags := strings.Join(given, ", ")
	tcp := o.tcpAddr != "" || activatedTCP
	switch {
	case !tcp && o.insecure:
		return nil, errors.New("--insecure applies only to TCP: give --tcp-addr (or a socket-activated TCP socket)")
	case !tcp && len(given) > 0:
		return nil, fmt.Errorf("%s: TLS applies only to TCP: give --tcp-addr (or a socket-activated TCP socket)", flags)
	case !tcp:
		return nil, nil
	case o.insecure && len(given) > 0:
		return nil, fmt.Errorf("--insecure serves plain HTTP, without TLS: it cannot go with %s", flags)
	case o.insecure:
		return nil, nil
	case len(given) == 0:
		return nil, errors.New("TCP needs TLS (--tls-cert and --tls-key), or --insecure for plain HTTP")
	case o.tlsCert == "" || o.tlsKey == "":
		return nil, fmt.Errorf("%s: TLS needs the plugin's certificate: give both --tls-cert and --tls-key", flags)
	case (o.tlsDaemonCert == "") != (o.tlsDaemonKey == ""):
		return nil, errors.New("--tls-daemon-cert and --tls-daemon-key go together")
	case activatedTCP && (o.tlsDaemonCA != "" || o.tlsDaemonCert != ""):
		return nil, errors.New("--tls-daemon-ca, --tls-daemon-cert and --tls-daemon-key go into the spec file, which only --tcp-addr writes: for a socket-activated TCP socket, name them in the spec file you write")
	case !activatedTCP && o.tlsClientCA != "" && o.tlsDaemonCert == "":
		return nil, errors.New("--tls-client-ca makes the plugin require client certificates, but the daemon gets none: add --tls-daemon-cert and --tls-daemon-key (a client certificate that CA signed), or the daemon can never connect")
	case !activatedTCP && o.tlsClientCA == "" && o.tlsDaemonCert != "":
		return nil, errors.New("--tls-daemon-cert is checked only with --tls-client-ca: without it the plugin asks for no client certificate and any client may connect; add --tls-client-ca")
	}
	return &plugin.ServerTLS{CertFile: o.tlsCert, KeyFile: o.tlsKey, ClientCAFile: o.tlsClientCA,
		DaemonCAFile: o.tlsDaemonCA, DaemonCertFile: o.tlsDaemonCert, DaemonKeyFile: o.tlsDaemonKey}, nil
}

// activationListeners maps plugin names to sockets passed by systemd.
func activationListeners(toServe []served) (map[string]net.Listener, error) {
	byName, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	out := map[string]net.Listener{}
	if len(byName) == 0 {
		return out, nil
	}
	var all []net.Listener
	for _, ls := range byName {
		all = append(all, ls...)
	}
	for _, sv := range toServe {
		if ls := byName[sv.name]; len(ls) > 0 {
			out[sv.name] = ls[0]
		}
	}
	if len(toServe) == 1 && len(out) == 0 && len(all) == 1 {
		out[toServe[0].name] = all[0]
	}
	if len(out) != len(toServe) {
		return nil, fmt.Errorf("socket activation: %d socket(s) passed, but not one named for each plugin (set FileDescriptorName= to the plugin name)", len(all))
	}
	return out, nil
}
