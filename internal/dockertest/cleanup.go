package dockertest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// teardown removes containers and plugins while dockerd still runs (so it
// cleans up after them itself), stops dockerd, then removes whatever is left.
func (d *Daemon) teardown() error {
	var errs []error
	if d.Pid() != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := d.removeAll(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	if err := d.stop(); err != nil {
		errs = append(errs, err)
	}
	d.client.CloseIdleConnections()
	if err := forceCleanup(d.Dir, d.Bridge); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeAll force-removes all containers and managed plugins.
func (d *Daemon) removeAll(ctx context.Context) error {
	out, err := d.Docker(ctx, "ps", "-aq")
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	if ids := strings.Fields(out); len(ids) > 0 {
		if _, err := d.Docker(ctx, append([]string{"rm", "-f"}, ids...)...); err != nil {
			return fmt.Errorf("remove containers: %w", err)
		}
	}
	// Plugin listing fails harmlessly on daemons without plugin support.
	if out, err := d.Docker(ctx, "plugin", "ls", "-q"); err == nil {
		if ids := strings.Fields(out); len(ids) > 0 {
			if _, err := d.Docker(ctx, append([]string{"plugin", "rm", "-f"}, ids...)...); err != nil {
				return fmt.Errorf("remove plugins: %w", err)
			}
		}
	}
	return nil
}

// forceCleanup removes everything a daemon in dir may have left behind when
// it did not shut down cleanly: container processes, containerd and shims,
// mounts, the bridge and the dir. It only touches what refers to dir.
func forceCleanup(dir, bridge string) error {
	if dir == "" {
		return nil
	}
	var errs []error
	// A stale dockerd or containerd (reaper case) could restart containers
	// while we delete them.
	if err := killProcs(dir, func(name string) bool { return name == "dockerd" || name == "containerd" }); err != nil {
		errs = append(errs, err)
	}
	// Killing a shim does not kill its container, so ask runc first.
	deleteRuncContainers(filepath.Join(dir, "exec", "runtime-runc"))
	// Shims killed below cannot remove their sockets, which live outside dir.
	removeShimSockets(filepath.Join(dir, "exec", "containerd", "daemon", "io.containerd.runtime.v2.task"))
	if err := killProcs(dir, isDockerProc); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	if bridge != "" {
		if _, err := net.InterfaceByName(bridge); err == nil {
			if out, err := exec.Command("ip", "link", "del", bridge).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("delete bridge %s: %w: %s", bridge, err, strings.TrimSpace(string(out))))
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// deleteRuncContainers force-deletes (kills) every container runc still
// knows under root, i.e. <exec-root>/runtime-runc/<namespace>/<id>.
func deleteRuncContainers(root string) {
	nss, err := os.ReadDir(root)
	if err != nil {
		return
	}
	// The dir does not say which engine made it: try Engine 29's runc,
	// then the system's, until one deletes the container.
	var runcs []string
	if p := filepath.Join(engine29Prefix(), "bin", "runc"); isExecutable(p) {
		runcs = append(runcs, p)
	}
	if p, err := lookTool("runc"); err == nil {
		runcs = append(runcs, p)
	}
	for _, ns := range nss {
		ids, _ := os.ReadDir(filepath.Join(root, ns.Name()))
		for _, id := range ids {
			for _, runc := range runcs {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				// Errors are not fatal: killProcs and the mount cleanup follow.
				err := exec.CommandContext(ctx, runc, "--root", filepath.Join(root, ns.Name()), "delete", "--force", id.Name()).Run()
				cancel()
				if err == nil {
					break
				}
			}
		}
	}
}

// removeShimSockets removes the sockets of the shims of the tasks below
// taskRoot: containerd 1.x writes <ns>/<id>/address holding
// "unix:///run/containerd/s/<hash>", containerd 2 <ns>/<id>/bootstrap.json
// with that address in its "address" field.
func removeShimSockets(taskRoot string) {
	bundles, _ := filepath.Glob(filepath.Join(taskRoot, "*", "*"))
	for _, dir := range bundles {
		for _, p := range shimAddresses(dir) {
			p = strings.TrimPrefix(p, "unix://")
			// Never remove anything else, whatever the file says.
			if filepath.Dir(p) == "/run/containerd/s" {
				_ = os.Remove(p)
			}
		}
	}
}

func shimAddresses(bundle string) []string {
	var out []string
	if b, err := os.ReadFile(filepath.Join(bundle, "address")); err == nil {
		out = append(out, strings.TrimSpace(string(b)))
	}
	if b, err := os.ReadFile(filepath.Join(bundle, "bootstrap.json")); err == nil {
		var boot struct {
			Address string `json:"address"`
		}
		if json.Unmarshal(b, &boot) == nil && boot.Address != "" {
			out = append(out, boot.Address)
		}
	}
	return out
}

func isDockerProc(name string) bool {
	return name == "dockerd" || strings.HasPrefix(name, "containerd")
}

// killProcs SIGKILLs processes whose executable name matches and whose
// command line refers to dir, and waits for them to go away.
func killProcs(dir string, match func(name string) bool) error {
	pids := procsReferencing(dir, match)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d referring to %s survived SIGKILL", pid, dir)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// procsReferencing lists pids whose argv[0] base name matches and one of
// whose arguments contains dir as a path (dir itself or dir/...).
func procsReferencing(dir string, match func(name string) bool) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !match(filepath.Base(args[0])) {
			continue
		}
		for _, a := range args[1:] {
			if refersTo(a, dir) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// refersTo reports whether s contains dir followed by end of string or '/',
// so that /tmp/dt1 does not match /tmp/dt12.
func refersTo(s, dir string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], dir)
		if j < 0 {
			return false
		}
		end := i + j + len(dir)
		if end == len(s) || s[end] == '/' {
			return true
		}
		i = end
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// mountsUnder returns the mount points at or below dir from
// /proc/self/mountinfo, deepest (and most recently mounted) first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	type mnt struct {
		id   int
		path string
	}
	var ms []mnt
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20) // overlay options are long
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountPath(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			id, _ := strconv.Atoi(fields[0])
			ms = append(ms, mnt{id, p})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	sort.Slice(ms, func(i, j int) bool {
		di, dj := strings.Count(ms[i].path, "/"), strings.Count(ms[j].path, "/")
		if di != dj {
			return di > dj
		}
		return ms[i].id > ms[j].id
	})
	paths := make([]string, len(ms))
	for i, m := range ms {
		paths[i] = m.path
	}
	return paths, nil
}

// unescapeMountPath undoes the octal escapes (\040 etc.) of mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder lazily unmounts everything at or below dir. It repeats because
// mounts can be stacked on one mount point.
func unmountUnder(dir string) error {
	var last []string
	for range 10 {
		ms, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			return nil
		}
		last = ms
		for _, m := range ms {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				return fmt.Errorf("unmount %s: %w", m, err)
			}
		}
	}
	return fmt.Errorf("mounts left under %s: %v", dir, last)
}

// Live daemons, torn down by the signal handler.
var (
	liveMu  sync.Mutex
	live    = map[*Daemon]struct{}{}
	sigOnce sync.Once
)

func register(d *Daemon) {
	liveMu.Lock()
	live[d] = struct{}{}
	liveMu.Unlock()
	sigOnce.Do(installSignalHandler)
}

func unregister(d *Daemon) {
	liveMu.Lock()
	delete(live, d)
	liveMu.Unlock()
}

// installSignalHandler tears down all live daemons on SIGINT/SIGTERM, since
// neither t.Cleanup nor deferred calls run when the process is interrupted.
func installSignalHandler() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-ch
		// A second signal kills the process the default way.
		signal.Stop(ch)
		fmt.Fprintf(os.Stderr, "dockertest: got %v, tearing down private dockerd(s)\n", s)
		liveMu.Lock()
		ds := make([]*Daemon, 0, len(live))
		for d := range live {
			ds = append(ds, d)
		}
		liveMu.Unlock()
		var wg sync.WaitGroup
		for _, d := range ds {
			wg.Go(func() {
				if err := d.Close(); err != nil {
					fmt.Fprintf(os.Stderr, "dockertest: teardown of %s: %v\n", d.Dir, err)
				}
			})
		}
		wg.Wait()
		code := 1
		if sig, ok := s.(syscall.Signal); ok {
			code = 128 + int(sig)
		}
		os.Exit(code)
	}()
}

// reapStale tears down daemon dirs in /tmp whose owning test process is gone
// (killed, or timed out with a panic, so no cleanup ran). Dirs without our
// owner file are never touched.
func reapStale(logf func(string, ...any)) {
	dirs, _ := filepath.Glob("/tmp/dt*")
	for _, dir := range dirs {
		pid, start, bridge, err := readOwner(dir)
		if err != nil {
			continue
		}
		if st, err := procStartTime(pid); err == nil && st == start {
			continue // owner still running
		}
		if logf != nil {
			logf("reaping stale daemon dir %s (owner pid %d is gone)", dir, pid)
		}
		if err := forceCleanup(dir, bridge); err != nil && logf != nil {
			logf("reaping %s: %v", dir, err)
		}
	}
}
