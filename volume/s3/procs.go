package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dockplug/dockplug/volume/mounts"
)

// procs runs one mount process per mounted volume: the mounts.Mounter of
// the driver. A process is started detached (setsid, its own log file),
// so the plugin's death does not reach it; its PID is kept in
// procs/NAME.pid so that a restarted plugin re-adopts it. The driver
// watches each process (pidfd), and a process that dies while the volume
// has references is replaced (the dead FUSE mount, ENOTCONN, is detached
// first).
type procs struct {
	d *Driver

	mu        sync.Mutex // one volume's process changes at a time
	watching  map[string]int
	stopping  map[string]bool // unmounts we asked for: not a death
	remounts  map[string]int
	lastDead  map[string]string
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ mounts.Mounter = (*procs)(nil)

func newProcs(d *Driver) *procs {
	return &procs{d: d, watching: map[string]int{}, stopping: map[string]bool{},
		remounts: map[string]int{}, lastDead: map[string]string{}, closed: make(chan struct{})}
}

func (p *procs) Root() string               { return filepath.Join(p.d.cfg.StateDir, "mounts") }
func (p *procs) Mountpoint(n string) string { return p.d.mountpoint(n) }

func (p *procs) file(name, ext string) string {
	return filepath.Join(p.d.cfg.StateDir, "procs", name+ext)
}

// Mount starts the volume's mount process and waits until its FUSE mount
// answers.
func (p *procs) Mount(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.start(ctx, name)
}

func (p *procs) start(ctx context.Context, name string) error {
	m, err := p.d.cached(name)
	if err != nil {
		return err
	}
	if m == nil {
		return fmt.Errorf("volume %s has references but no metadata on this host", name)
	}
	o, err := parseOpts(m.Name, m.Opts)
	if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	mp := p.Mountpoint(name)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	spec := &MountSpec{
		ConfigFile: p.d.cfg.Config.Path, Profile: m.Profile, Bucket: m.Bucket, Prefix: m.Prefix,
		Volume: name, Mountpoint: mp, CacheDir: filepath.Join(p.d.cfg.StateDir, "cache", name),
		UID: o.UID, GID: o.GID, Mode: uint32(o.Mode), CacheTTL: o.CacheTTL.String(), AsyncClose: o.AsyncClose, StagedMax: o.StagedMax,
		ExitFile: p.file(name, ".exit"),
	}
	b, _ := json.MarshalIndent(spec, "", "  ")
	specFile := p.file(name, ".json")
	if err := os.WriteFile(specFile, b, 0o600); err != nil {
		return fmt.Errorf("mount spec: %w", err)
	}
	os.Remove(spec.ExitFile)
	logf, err := os.OpenFile(p.file(name, ".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("mount log: %w", err)
	}
	defer logf.Close()
	argv := append(append([]string{}, p.d.cfg.MountCommand...), "--spec", specFile)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	// Its own session: no signal to the plugin's process group or
	// terminal reaches it, and it outlives the plugin.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mount process: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() // we are its parent: reap it
	if err := os.WriteFile(p.file(name, ".pid"), []byte(strconv.Itoa(pid)), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("mount pid file: %w", err)
	}
	for {
		if ok, err := mountAnswers(mp); ok {
			break
		} else if err != nil {
			p.d.log.Debug("waiting for the mount", "volume", name, "err", err)
		}
		select {
		case <-exited:
			return fmt.Errorf("mount process of %s exited: %s", name, lastLines(p.file(name, ".log"), 5))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return fmt.Errorf("mount process of %s: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.watch(name, pid, exited)
	p.d.log.Debug("mounted", "volume", name, "pid", pid)
	return nil
}

// mountAnswers: the FUSE mount is in mountinfo and answers stat.
func mountAnswers(mp string) (bool, error) {
	live, err := mounts.MountPoints()
	if err != nil || !live[mp] {
		return false, err
	}
	var st unix.Stat_t
	if err := unix.Stat(mp, &st); err != nil {
		return false, err
	}
	return true, nil
}

// Unmount unmounts the FUSE mount and waits for the process to finish its
// uploads and exit; an upload it could not finish is an error (the staged
// data stays in the cache dir for the next mount process).
func (p *procs) Unmount(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	mp := p.Mountpoint(name)
	pid := p.readPid(name)
	p.stopping[name] = true
	defer delete(p.stopping, name)
	err := unix.Unmount(mp, 0)
	if errors.Is(err, unix.EBUSY) {
		// Someone on the host still has it open; detach it so new users
		// can't reach it. The process ends when the last user goes.
		err = unix.Unmount(mp, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", mp, err)
	}
	if pid > 0 && processIsOurs(pid, p.file(name, ".json")) {
		if err := waitExit(ctx, pid); err != nil {
			return fmt.Errorf("volume %s: waiting for the mount process (pid %d) to finish its uploads: %w", name, pid, err)
		}
	}
	p.forgetLocked(name)
	if b, err := os.ReadFile(p.file(name, ".exit")); err == nil && strings.TrimSpace(string(b)) != "ok" {
		return fmt.Errorf("volume %s: the mount process could not upload everything (kept in the cache dir, the next mount uploads it): %s", name, bytes.TrimSpace(b))
	}
	return nil
}

func (p *procs) readPid(name string) int {
	b, err := os.ReadFile(p.file(name, ".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// processIsOurs: pid is alive and is the mount process of this spec file
// (a PID can be reused after a reboot or a long time).
func processIsOurs(pid int, specFile string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
			return false // a zombie has finished
		}
	}
	return bytes.Contains(b, []byte(specFile+"\x00"))
}

// waitExit waits until pid is gone, through a pidfd (works for processes
// that are not our children).
func waitExit(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	} else if err != nil {
		return fmt.Errorf("pidfd: %w", err)
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 200)
		if n > 0 {
			return nil
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// watch remounts name if its process dies while the volume is referenced.
// exited is closed when the process ends (nil: not our child, use a pidfd).
func (p *procs) watch(name string, pid int, exited <-chan struct{}) {
	p.watching[name] = pid
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-p.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		if exited != nil {
			select {
			case <-exited:
			case <-ctx.Done():
				return
			}
		} else if err := waitExit(ctx, pid); err != nil {
			return
		}
		p.died(name, pid)
	}()
}

func (p *procs) died(name string, pid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping[name] || p.watching[name] != pid {
		return
	}
	delete(p.watching, name)
	select {
	case <-p.closed:
		return
	default:
	}
	why := fmt.Sprintf("mount process %d died at %s: %s", pid, time.Now().UTC().Format(time.RFC3339), lastLines(p.file(name, ".log"), 2))
	p.lastDead[name] = why
	n, err := p.d.mounts.Count(name)
	if err != nil || n == 0 {
		p.d.log.Warn("mount process died with no reference left", "volume", name, "pid", pid)
		p.detachDead(name)
		return
	}
	p.d.log.Error("mount process died: remounting (running containers keep a dead mount until restarted)", "volume", name, "pid", pid)
	p.detachDead(name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.start(ctx, name); err != nil {
		p.lastDead[name] = why + "; remount failed: " + err.Error()
		p.d.log.Error("remount failed", "volume", name, "err", err)
		return
	}
	p.remounts[name]++
}

// detachDead lazily unmounts a FUSE mount whose server is gone.
func (p *procs) detachDead(name string) {
	mp := p.Mountpoint(name)
	if live, err := mounts.MountPoints(); err == nil && live[mp] {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			p.d.log.Error("detach dead mount", "volume", name, "err", err)
		}
	}
}

// repairDead is Mount's check: a mount listed but not answering (ENOTCONN)
// is detached, so the table mounts it afresh.
func (p *procs) repairDead(ctx context.Context, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mp := p.Mountpoint(name)
	live, err := mounts.MountPoints()
	if err != nil || !live[mp] {
		return
	}
	var st unix.Stat_t
	if err := unix.Stat(mp, &st); errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) {
		p.d.log.Warn("volume's mount is dead (ENOTCONN): mounting again", "volume", name)
		p.lastDead[name] = "mount found dead (ENOTCONN) at " + time.Now().UTC().Format(time.RFC3339)
		p.remounts[name]++
		delete(p.watching, name)
		p.detachDead(name)
	}
}

// adopt takes over the mount processes a previous plugin left: live ones
// are watched, mounts whose process is gone are detached (Reconcile then
// remounts the referenced ones).
func (p *procs) adopt(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pids, err := filepath.Glob(filepath.Join(p.d.cfg.StateDir, "procs", "*.pid"))
	if err != nil {
		return err
	}
	live, err := mounts.MountPoints()
	if err != nil {
		return err
	}
	for _, f := range pids {
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		pid := p.readPid(name)
		mp := p.Mountpoint(name)
		if pid > 0 && processIsOurs(pid, p.file(name, ".json")) {
			if ok, _ := mountAnswers(mp); ok {
				p.d.log.Info("re-adopted mount process", "volume", name, "pid", pid)
				p.watch(name, pid, nil)
				continue
			}
		}
		if live[mp] {
			p.d.log.Warn("mount process gone: detaching its dead mount", "volume", name, "pid", pid)
			p.lastDead[name] = fmt.Sprintf("mount process %d found dead at plugin start", pid)
			p.remounts[name]++
			p.detachDead(name)
		}
		os.Remove(f)
	}
	return nil
}

func (p *procs) forget(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetLocked(name)
	delete(p.remounts, name)
	delete(p.lastDead, name)
	for _, ext := range []string{".json", ".exit", ".log"} {
		os.Remove(p.file(name, ext))
	}
}

func (p *procs) forgetLocked(name string) {
	delete(p.watching, name)
	os.Remove(p.file(name, ".pid"))
}

// status is what Get reports of the volume's mount on this host.
func (p *procs) status(name string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := map[string]any{"remounts": p.remounts[name]}
	if pid, ok := p.watching[name]; ok {
		st["mountPid"] = pid
		st["mount"] = "running"
	} else {
		st["mount"] = "none"
	}
	if why := p.lastDead[name]; why != "" {
		st["lastDeath"] = why
	}
	return st
}

func (p *procs) close() {
	p.closeOnce.Do(func() { close(p.closed) })
	p.wg.Wait()
}

func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
