package torture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
)

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

// proc is one `dockplug serve KIND` process with private state and socket
// dirs under Root, started again under the same name after each kill.
type proc struct {
	Kind  string // catalogue plugin, served under its own name
	Impl  string // what its handshake must list
	Root  string // temp dir: state/, sock/
	State string // Root/state/Kind: the plugin's own state dir
	Sock  string // Root/sock/Kind.sock
	out   *syncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current process has been waited for
	werr error
}

// newProc prepares a plugin process for t and registers its cleanup: the
// process (by PID), every mount under Root, Root itself.
func newProc(t *testing.T, kind, impl string) *proc {
	t.Helper()
	// Short: a unix socket path must stay under 108 bytes.
	root, err := os.MkdirTemp("/tmp", "dpt")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	p := &proc{Kind: kind, Impl: impl, Root: root,
		State: filepath.Join(root, "state", kind), Sock: filepath.Join(root, "sock", kind+".sock"), out: &syncBuffer{}}
	t.Cleanup(func() { p.cleanup(t) })
	return p
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// start runs the plugin and waits until it answers Plugin.Activate. After
// a kill -9 its socket is stale: the plugin replaces it.
func (p *proc) start() error {
	if p.running() {
		return errors.New("plugin already running")
	}
	cmd := exec.Command(binary, "serve", p.Kind,
		"--state-dir", filepath.Join(p.Root, "state"), "--socket-dir", filepath.Join(p.Root, "sock"))
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // a terminal ^C reaches only the test binary
		Pdeathsig: syscall.SIGTERM, // and if the test binary dies, so does the plugin
	}
	done := make(chan struct{})
	startErr := make(chan error, 1)
	// Pdeathsig fires when the thread that forked the child exits: keep it
	// locked until the process is waited for.
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			startErr <- err
			return
		}
		startErr <- nil
		err := cmd.Wait()
		p.mu.Lock()
		p.werr = err
		p.mu.Unlock()
		close(done)
	}()
	if err := <-startErr; err != nil {
		return fmt.Errorf("start plugin %s: %w", p.Kind, err)
	}
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()

	c := p.client(plugin.Backoff{})
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, err := c.Activate(ctx)
		cancel()
		if err == nil {
			if !m.Has(p.Impl) {
				return fmt.Errorf("plugin %s implements %v, not %s", p.Kind, m.Implements, p.Impl)
			}
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("plugin %s exited before answering: %v\n%s", p.Kind, p.werr, tail(p.out.String(), 40))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("plugin %s did not answer within 60s: %w", p.Kind, err)
		}
	}
}

// kill9 sends SIGKILL to the plugin's PID and waits for it: no cleanup
// runs, the socket stays (stale), and so do its mounts.
func (p *proc) kill9() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 plugin %s (pid %d): %w", p.Kind, cmd.Process.Pid, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("plugin %s (pid %d) survived SIGKILL for 30s", p.Kind, cmd.Process.Pid)
	}
}

// stop sends SIGTERM and waits: the plugin must exit cleanly (with -race,
// a data race makes it exit 66) and remove its socket.
func (p *proc) stop() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done == nil || !p.running() {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("plugin %s (pid %d) ignored SIGTERM for 30s and was killed", p.Kind, cmd.Process.Pid)
	}
	p.mu.Lock()
	err := p.werr
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("plugin %s exited with %v after SIGTERM:\n%s", p.Kind, err, tail(p.out.String(), 40))
	}
	if _, err := os.Lstat(p.Sock); err == nil {
		return fmt.Errorf("plugin %s left its socket %s after SIGTERM", p.Kind, p.Sock)
	}
	return nil
}

// cleanup kills the process we started (by its PID) if it still runs,
// detaches every mount under Root and removes Root.
func (p *proc) cleanup(t *testing.T) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done != nil && p.running() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
	ms, err := mountsUnder(p.Root)
	if err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, m := range ms {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Errorf("cleanup: unmount %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(p.Root); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if t.Failed() {
		t.Logf("plugin %s output (tail):\n%s", p.Kind, tail(p.out.String(), 80))
	}
}

// client talks to the plugin as the daemon does: a retry after the
// plugin read the request carries an empty body (WithDrainedRetry, unless
// -torture.resend), on schedule b.
func (p *proc) client(b plugin.Backoff) *plugin.Client {
	opts := []plugin.ClientOption{plugin.WithBackoff(b)}
	if !*flagResend {
		opts = append(opts, plugin.WithDrainedRetry())
	}
	c, err := plugin.NewClient("unix://"+p.Sock, opts...)
	if err != nil {
		panic(err) // the address is ours and valid
	}
	return c
}

// adminClient talks to the plugin's admin socket (<state-dir>/NAME/admin.sock).
func (p *proc) adminClient(b plugin.Backoff) *plugin.Client {
	c, err := plugin.NewClient("unix://"+filepath.Join(p.State, "admin.sock"), plugin.WithBackoff(b))
	if err != nil {
		panic(err) // the address is ours and valid
	}
	return c
}

// countOutput is how many lines of the plugin's output so far contain s.
func (p *proc) countOutput(s string) int {
	return strings.Count(p.out.String(), s)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
