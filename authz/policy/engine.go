package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/dockplug/dockplug/authz"
)

// Load reads and compiles a policy file.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	f, err := ParseFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return Compile(f, path)
}

// Engine holds the current policy of a running plugin and replaces it on
// reload only with one that compiles. Without any good policy it denies
// everything, saying why: dockerd cannot start without its authorization
// plugin, so refusing to start would help nobody.
type Engine struct {
	path     string
	log      *slog.Logger
	cur      atomic.Pointer[Policy]
	lastErr  atomic.Pointer[error]
	OnReload func(ok bool) // for metrics; may be nil
	// Identity verifies the identity proxy's header; nil trusts none.
	Identity *Identity
}

// NewEngine loads path; a failure is logged and leaves the engine denying.
func NewEngine(path string, log *slog.Logger) *Engine {
	e := &Engine{path: path, log: log}
	if path == "" {
		e.setErr(errors.New("no policy file configured (--authz-policy)"))
		return e
	}
	e.Reload()
	return e
}

func (e *Engine) setErr(err error) { e.lastErr.Store(&err) }

// Err is the last load error, nil after a successful load.
func (e *Engine) Err() error {
	if p := e.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Policy returns the current policy; nil when none ever loaded.
func (e *Engine) Policy() *Policy { return e.cur.Load() }

// Reload recompiles the file; on error the last good policy stays.
func (e *Engine) Reload() error {
	p, err := Load(e.path)
	if err != nil {
		e.setErr(err)
		if e.cur.Load() != nil {
			e.log.Error("policy reload failed; keeping the last good policy", "err", err)
		} else {
			e.log.Error("no valid policy: denying every request", "err", err)
		}
	} else {
		e.cur.Store(p)
		e.lastErr.Store(nil)
		e.log.Info("policy loaded", "file", e.path, "rules", len(p.rules))
	}
	// Told only once the new policy decides: whoever is told may rely on it.
	if e.OnReload != nil {
		e.OnReload(err == nil)
	}
	return err
}

// Decide judges a request with the current policy.
func (e *Engine) Decide(ctx context.Context, req *authz.Request, response bool) Decision {
	p := e.cur.Load()
	if p == nil {
		if response {
			return Decision{Allow: true, Rule: "no-policy", UID: -1}
		}
		return Decision{Rule: "no-policy", UID: -1, Message: fmt.Sprintf("no valid authorization policy, denying everything: %v", e.Err())}
	}
	return p.DecideAs(ctx, req, response, e.Identity)
}

// Watch reloads on each signal from hup (SIGHUP) and whenever the file
// changes, until ctx ends. It watches the file's directory, since editors
// and config management replace files by renaming.
func (e *Engine) Watch(ctx context.Context, hup <-chan os.Signal) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policy: %w", err)
	}
	defer w.Close()
	if e.path != "" {
		if err := w.Add(filepath.Dir(e.path)); err != nil {
			return fmt.Errorf("watch policy directory: %w", err)
		}
	}
	abs, _ := filepath.Abs(e.path)
	// inotify can drop or pair events in ways that hide a change (a full
	// queue, a rename reported under the old name), so the file is also
	// polled: any change of inode, size or mtime reloads it.
	last := stampOf(e.path)
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	reload := func() {
		last = stampOf(e.path)
		e.Reload()
	}
	// Coalesce bursts of events (write, chmod, rename) into one reload.
	var pending <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			e.log.Info("SIGHUP: reloading policy")
			reload()
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if p, _ := filepath.Abs(ev.Name); p == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				pending = time.After(100 * time.Millisecond)
			}
		case <-poll.C:
			if e.path != "" && pending == nil && stampOf(e.path) != last {
				pending = time.After(100 * time.Millisecond)
			}
		case <-pending:
			pending = nil
			reload()
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			e.log.Warn("policy watch", "err", err)
		}
	}
}

// pollInterval is how often Watch checks the file besides inotify.
const pollInterval = time.Second

// stamp identifies a version of the policy file.
type stamp struct {
	ino, size int64
	mtime     time.Time
	ok        bool
}

func stampOf(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	s := stamp{size: fi.Size(), mtime: fi.ModTime(), ok: true}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = int64(st.Ino)
	}
	return s
}
