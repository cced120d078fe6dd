package linearizability

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockplug/dockplug/internal/testbin"
	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/plugin"
)

var (
	flagDuration = flag.Duration("lin.duration", 45*time.Second, "how long the clients run under faults")
	flagWorkers  = flag.Int("lin.workers", 3, "concurrent clients per plugin process")
	flagFaultGap = flag.Duration("lin.faultgap", 1500*time.Millisecond, "mean time between faults")
	flagSeed     = flag.Uint64("lin.seed", 0, "random seed (0: from the clock; the seed is logged)")
	flagBench    = flag.Bool("lin.bench", false, "measure global allocations per second with 1, 3 and 6 processes")
	flagBenchDur = flag.Duration("lin.benchdur", 5*time.Second, "measuring time per process count")
)

// binary is the dockplug binary built from this checkout.
var (
	binary   string
	buildErr error
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		buildErr = errors.New("-short mode")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "dockplug-lin-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "linearizability:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = testbin.Build(dir, raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, "linearizability:", err)
		buildErr = err
		return 1
	}
	return m.Run()
}

func needBinary(t *testing.T) {
	t.Helper()
	if binary == "" {
		t.Skipf("linearizability: skipping: %v", buildErr)
	}
}

// syncBuffer collects a plugin's output across its runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one `dockplug serve dockplug-ipam` process: its own state dir and
// host ID, its socket in a private socket dir (never /run/docker/plugins).
type proc struct {
	name, host string
	sockDir    string
	stateDir   string
	endpoints  string
	out        *syncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newProc(t *testing.T, root, name, host, endpoints string) *proc {
	p := &proc{name: name, host: host, sockDir: filepath.Join(root, "sock"), stateDir: filepath.Join(root, "state-"+name),
		endpoints: endpoints, out: &syncBuffer{}}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, tail(p.out.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (p *proc) sock() string { return filepath.Join(p.sockDir, p.name+".sock") }

// start starts the process and waits until it answers Plugin.Activate.
func (p *proc) start(ctx context.Context) error {
	cmd := exec.Command(binary, "serve", "dockplug-ipam="+p.name, "--socket-dir", p.sockDir, "--state-dir", p.stateDir,
		"--etcd-endpoints", p.endpoints, "--ipam-host-id", p.host, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	c, err := plugin.NewClient("unix://"+p.sock(), plugin.WithBackoff(plugin.Backoff{Base: 20 * time.Millisecond, Limit: 30 * time.Second}))
	if err != nil {
		return fmt.Errorf("client of %s: %w", p.name, err)
	}
	defer c.Close()
	actx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := c.Activate(actx); err != nil {
		return fmt.Errorf("activate %s: %w\n%s", p.name, err, tail(p.out.String(), 2000))
	}
	return nil
}

// kill sends SIGKILL to the running process, by its PID, and waits for it.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop sends SIGTERM and waits.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// client calls the plugin as dockerd does: retries only when no answer
// arrived, resending what dockerd's drained buffer holds, with a short
// backoff.
func (p *proc) client(t *testing.T) *ipam.Client {
	c, err := plugin.NewClient("unix://"+p.sock(), plugin.WithDrainedRetry(),
		plugin.WithBackoff(plugin.Backoff{Base: 50 * time.Millisecond, Limit: 2 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return ipam.NewClient(c)
}
