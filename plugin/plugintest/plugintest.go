// Package plugintest serves plugin kinds on a real unix socket for tests and
// examples, and returns a Client for it.
package plugintest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
)

// TestBackoff is a short retry schedule for tests (the daemon's is 1 s .. 30 s).
var TestBackoff = plugin.Backoff{Base: 10 * time.Millisecond, Limit: 300 * time.Millisecond}

// Running is a served plugin.
type Running struct {
	Server    *plugin.Server
	SocketDir string
	Client    *plugin.Client
	stop      context.CancelFunc
	done      chan error
	ownDir    bool
}

// Stop shuts the server down and waits for it; it removes the socket dir
// if Start made it.
func (r *Running) Stop() error {
	r.stop()
	err := <-r.done
	if _, serr := os.Stat(filepath.Join(r.SocketDir, r.Server.Name()+".sock")); serr == nil && err == nil {
		err = fmt.Errorf("plugin %s left its socket behind (G3)", r.Server.Name())
	}
	if r.ownDir {
		os.RemoveAll(r.SocketDir)
	}
	return err
}

// Start serves kinds under name in a fresh socket dir (short, under /tmp,
// because sun_path is limited to 108 bytes) and returns once the socket
// accepts. The caller must call Stop.
func Start(name string, kinds ...plugin.Kind) (*Running, error) {
	dir, err := os.MkdirTemp("/tmp", "pt")
	if err != nil {
		return nil, err
	}
	r, err := StartIn(dir, plugin.Config{Name: name, SocketDir: dir}, kinds...)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r.ownDir = true
	return r, nil
}

// StartIn is Start with a full config.
func StartIn(dir string, cfg plugin.Config, kinds ...plugin.Kind) (*Running, error) {
	srv, err := plugin.NewServer(cfg, kinds...)
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Server: srv, SocketDir: dir, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Serve(ctx) }()
	r.Client, err = plugin.NewClient(srv.Addr(), plugin.WithBackoff(TestBackoff))
	if err != nil {
		cancel()
		<-r.done
		return nil, err
	}
	return r, nil
}

// Serve is Start for a test: it fails t on error and stops the server and
// removes its socket dir at cleanup.
func Serve(t testing.TB, name string, kinds ...plugin.Kind) *Running {
	t.Helper()
	r, err := Start(name, kinds...)
	if err != nil {
		t.Fatalf("serve plugin %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("stop plugin %s: %v", name, err)
		}
	})
	return r
}

// Must is a helper for examples, which have no testing.TB.
func Must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("plugintest: %v", err))
	}
	return v
}
