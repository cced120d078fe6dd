package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Default discovery roots, as dockerd has them on Linux.
const (
	DefaultSocketDir = "/run/docker/plugins"
	DefaultSpecDir   = "/etc/docker/plugins"
	LibSpecDir       = "/usr/lib/docker/plugins"
)

// ErrNotFound is wrapped by lookups that found no socket or spec file.
var ErrNotFound = errors.New("plugin not found")

// Registry finds legacy (v1) plugins exactly as the daemon does (section 1
// of the protocol reference). The zero value is not useful: use
// NewRegistry, or set the roots for tests.
type Registry struct {
	SocketDir string
	SpecDirs  []string
}

// NewRegistry returns a registry with the daemon's roots.
func NewRegistry() *Registry {
	return &Registry{SocketDir: DefaultSocketDir, SpecDirs: []string{DefaultSpecDir, LibSpecDir}}
}

// Found is a plugin located on disk.
type Found struct {
	Name   string
	Addr   string      // unix:///..., tcp://..., https://...
	TLS    *TLSOptions // nil: Go's default verification
	Source string      // the file it was found through
}

// Client returns a client for the plugin's address and TLS options.
func (f *Found) Client(opts ...ClientOption) (*Client, error) {
	return NewClient(f.Addr, append([]ClientOption{WithTLS(f.TLS)}, opts...)...)
}

// Lookup tries the daemon's candidates in order: NAME.sock, NAME/NAME.sock
// in the socket dir, then in each spec dir NAME.spec, NAME/NAME.spec,
// NAME.json, NAME/NAME.json. The error wraps ErrNotFound when none exists.
func (r *Registry) Lookup(name string) (*Found, error) {
	if name == "" {
		return nil, errors.New("unable to find plugin without name")
	}
	for _, p := range []string{
		filepath.Join(r.SocketDir, name+".sock"),
		filepath.Join(r.SocketDir, name, name+".sock"),
	} {
		if isSocket(p) {
			return socketPlugin(name, p), nil
		}
	}
	for _, dir := range r.SpecDirs {
		for _, p := range []string{
			filepath.Join(dir, name+".spec"),
			filepath.Join(dir, name, name+".spec"),
			filepath.Join(dir, name+".json"),
			filepath.Join(dir, name, name+".json"),
		} {
			if _, err := os.Stat(p); err != nil {
				continue
			}
			return ReadSpecFile(name, p)
		}
	}
	return nil, fmt.Errorf("could not find plugin %s in v1 plugin registry: %w", name, ErrNotFound)
}

// Scan lists every plugin the daemon would find when it lists all plugins of
// a kind: sockets and DIR/DIR.sock in the socket dir, and .spec/.json files
// (plain, or DIR/DIR.* in a subdirectory) in the spec dirs. As the daemon
// does, it collects names and resolves each with Lookup, so a name found
// several ways gets the address the daemon would use.
// Unreadable directories and unparsable spec files are reported in errs;
// the rest of the scan goes on.
func (r *Registry) Scan() ([]*Found, []error) {
	var names []string
	var errs []error
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	entries, err := os.ReadDir(r.SocketDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("scan %s: %w", r.SocketDir, err))
	}
	for _, e := range entries {
		p := filepath.Join(r.SocketDir, e.Name())
		if e.IsDir() {
			if isSocket(filepath.Join(p, e.Name()+".sock")) {
				add(e.Name())
			}
		} else if name, ok := strings.CutSuffix(e.Name(), ".sock"); ok && isSocket(p) {
			add(name)
		}
	}
	for _, dir := range r.SpecDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("scan %s: %w", dir, err))
			}
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() {
				for _, ext := range []string{".spec", ".json"} {
					if st, err := os.Stat(filepath.Join(dir, name, name+ext)); err == nil && st.Mode().IsRegular() {
						add(name)
						break
					}
				}
			} else if ext := filepath.Ext(name); ext == ".spec" || ext == ".json" {
				add(strings.TrimSuffix(name, ext))
			}
		}
	}
	var out []*Found
	for _, name := range names {
		f, err := r.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, f)
	}
	return out, errs
}

func isSocket(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&fs.ModeSocket != 0
}

func socketPlugin(name, path string) *Found {
	return &Found{Name: name, Addr: "unix://" + path, TLS: &TLSOptions{InsecureSkipVerify: true}, Source: path}
}

// SpecFile is the content of a NAME.json spec file. A Name key is ignored by
// the daemon (the name comes from the file name); we write it for humans.
type SpecFile struct {
	Name      string      `json:"Name,omitempty"`
	Addr      string      `json:"Addr"`
	TLSConfig *TLSOptions `json:"TLSConfig,omitempty"`
}

// ReadSpecFile parses a .spec (one URL) or .json spec file.
func ReadSpecFile(name, path string) (*Found, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plugin spec %s: %w", path, err)
	}
	if filepath.Ext(path) == ".json" {
		return ParseJSONSpec(name, path, data)
	}
	return ParseSpec(name, path, data)
}

// ParseSpec parses the content of a .spec file: a single URL with a scheme.
func ParseSpec(name, path string, data []byte) (*Found, error) {
	addr := strings.TrimSpace(string(data))
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("plugin spec %s: %w", path, err)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("plugin spec %s: Unknown protocol in %q", path, addr)
	}
	return &Found{Name: name, Addr: addr, TLS: &TLSOptions{InsecureSkipVerify: true}, Source: path}, nil
}

// ParseJSONSpec parses the content of a .json spec file. With a TLSConfig
// but no CAFile the daemon skips verification; so do we.
func ParseJSONSpec(name, path string, data []byte) (*Found, error) {
	var s SpecFile
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("plugin spec %s: %w", path, err)
	}
	if s.Addr == "" {
		return nil, fmt.Errorf("plugin spec %s: no Addr", path)
	}
	if _, err := url.Parse(s.Addr); err != nil {
		return nil, fmt.Errorf("plugin spec %s: %w", path, err)
	}
	if s.TLSConfig != nil && s.TLSConfig.CAFile == "" {
		s.TLSConfig.InsecureSkipVerify = true
	}
	return &Found{Name: name, Addr: s.Addr, TLS: s.TLSConfig, Source: path}, nil
}

// Get does what the daemon's plugins.Get does: locate the plugin (retrying
// while it is not there, on the client's schedule), activate it, and check
// that it implements kind. The returned client is ready for calls.
func (r *Registry) Get(ctx context.Context, name, kind string, opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{backoff: DaemonBackoff}
	for _, o := range opts {
		o(&cfg)
	}
	var found *Found
	err := cfg.backoff.retry(ctx, cfg.onRetry, func() error {
		var err error
		found, err = r.Lookup(name)
		if errors.Is(err, ErrNotFound) {
			return &transportError{err}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	c, err := found.Client(opts...)
	if err != nil {
		return nil, err
	}
	m, err := c.Activate(ctx)
	if err != nil {
		c.Close()
		return nil, err
	}
	if !m.Has(kind) {
		c.Close()
		//lint:ignore ST1005 the daemon's exact words, which users search for
		return nil, fmt.Errorf("Plugin does not implement the requested driver: plugin=%q, requested implementation=%q", name, kind)
	}
	return c, nil
}
