package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dockplug/dockplug/internal/dockertest"
	"github.com/dockplug/dockplug/internal/testbin"
)

// One private dockerd and one dockplug binary for the whole package: each
// test starts its own plugin process under a unique name against them.
var (
	daemon      *dockertest.Daemon
	unavailable error  // why the e2e tests skip, when daemon is nil
	binary      string // the dockplug binary built from this checkout
	image       string // busybox image in daemon

	// Plugin names started by this process, checked at exit: no socket of
	// ours may be left in /run/docker/plugins (G3).
	startedMu sync.Mutex
	started   []string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	flag.Parse()
	if err := dockertest.Available(); err != nil {
		if dockertest.Required() {
			fmt.Fprintf(os.Stderr, "e2e: %s=require but: %v\n", dockertest.EnvE2E, err)
			return 1
		}
		unavailable = err
		return m.Run() // every test skips, saying why
	}
	if testing.Short() && !dockertest.Required() {
		unavailable = errors.New("-short mode")
		return m.Run()
	}

	bin, err := os.MkdirTemp("", "dockplug-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(bin)
	if binary, err = testbin.Build(bin, raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}

	d, cleanup, err := dockertest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer cleanup()
	daemon = d
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	image, err = d.BuildImage(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}

	code := m.Run()
	if err := checkNoSockets(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func checkNoSockets() error {
	startedMu.Lock()
	defer startedMu.Unlock()
	var left []string
	for _, name := range started {
		if _, err := os.Lstat(socketPath(name)); err == nil {
			left = append(left, socketPath(name))
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("plugin sockets left behind: %v", left)
	}
	return nil
}

// need skips the test when the host cannot run the e2e tests (or fails it
// under DOCKPLUG_E2E=require), with the reason.
func need(t *testing.T) {
	t.Helper()
	if daemon != nil {
		return
	}
	if dockertest.Required() {
		t.Fatalf("e2e: %s=require but: %v", dockertest.EnvE2E, unavailable)
	}
	t.Skipf("e2e: skipping: %v (set %s=require to make this fatal)", unavailable, dockertest.EnvE2E)
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
