package dockertest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Engine names a Docker Engine the harness can start.
type Engine string

const (
	// Engine2010 is Debian's docker.io (dockerd 20.10, API 1.41), found on
	// the system PATH.
	Engine2010 Engine = "20.10"
	// Engine29 is dockerd built from github.com/moby/moby/v2 (Engine 29
	// line, API 1.56) by scripts/engine29.sh into a private prefix, with the
	// containerd, shim, runc and docker-proxy built beside it.
	Engine29 Engine = "29"

	// EnvEngine selects the engine of daemons started without WithEngine:
	// "20.10" (the default) or "29".
	EnvEngine = "DOCKPLUG_E2E_ENGINE"
	// EnvEngine29Prefix overrides where Engine 29 is installed.
	EnvEngine29Prefix = "DOCKPLUG_ENGINE29_PREFIX"
	// DefaultEngine29Prefix is where scripts/engine29.sh installs Engine 29.
	DefaultEngine29Prefix = "/opt/dockplug/engine29"

	// minAPIVersion2010CLI lets the 20.10 CLI (API 1.41) talk to Engine 29,
	// whose default minimum API version is 1.44.
	minAPIVersion2010CLI = "1.41"
)

// WithEngine picks the engine instead of DOCKPLUG_E2E_ENGINE.
func WithEngine(e Engine) Option {
	return func(c *config) { c.engine = e }
}

// SelectedEngine is the engine DOCKPLUG_E2E_ENGINE asks for.
func SelectedEngine() (Engine, error) {
	switch v := strings.TrimSpace(os.Getenv(EnvEngine)); v {
	case "", string(Engine2010):
		return Engine2010, nil
	case string(Engine29):
		return Engine29, nil
	default:
		return "", fmt.Errorf("%s=%q: want %q or %q", EnvEngine, v, Engine2010, Engine29)
	}
}

// engine29Prefix is the install prefix of Engine 29.
func engine29Prefix() string {
	if p := os.Getenv(EnvEngine29Prefix); p != "" {
		return p
	}
	return DefaultEngine29Prefix
}

// engine29Bins are the binaries scripts/engine29.sh installs; dockerd finds
// the others on its PATH, so all must be there.
var engine29Bins = []string{"dockerd", "docker-proxy", "containerd", "containerd-shim-runc-v2", "runc"}

// engineTools returns the dockerd binary of e and the PATH dockerd must run
// with (the private prefix first, so it starts Engine 29's containerd and
// runc rather than Debian's).
func engineTools(e Engine) (dockerd, path string, err error) {
	switch e {
	case Engine2010:
		d, err := lookTool("dockerd")
		if err != nil {
			return "", "", fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return d, os.Getenv("PATH"), nil
	case Engine29:
		bin := filepath.Join(engine29Prefix(), "bin")
		for _, b := range engine29Bins {
			if !isExecutable(filepath.Join(bin, b)) {
				return "", "", fmt.Errorf("%w: Engine 29's %s is not in %s (run scripts/engine29.sh)", ErrUnavailable, b, bin)
			}
		}
		path := bin
		if p := os.Getenv("PATH"); p != "" {
			path += ":" + p
		}
		return filepath.Join(bin, "dockerd"), path, nil
	default:
		return "", "", fmt.Errorf("unknown engine %q", e)
	}
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
