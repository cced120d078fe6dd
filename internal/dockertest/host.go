package dockertest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// proc is a started child process whose exit is observed by one goroutine.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed after Wait returned; err is set then
	err  error
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startProc starts cmd from a goroutine locked to its OS thread until the
// process exits: Pdeathsig fires when the *thread* that forked the child
// exits, and the Go runtime may retire an unlocked thread at any time.
func startProc(cmd *exec.Cmd) (*proc, error) {
	p := &proc{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// pickBridgeName returns an unused interface name "dt" + 6 hex digits
// (well below the 15 byte IFNAMSIZ limit).
func pickBridgeName() (string, error) {
	for range 20 {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("bridge name: %w", err)
		}
		name := "dt" + hex.EncodeToString(b)
		if _, err := net.InterfaceByName(name); err != nil {
			return name, nil
		}
	}
	return "", errors.New("bridge name: no free name found")
}

// createBridge creates bridge name with a random 10.x.y.1/24 that overlaps
// no address or route on the host. dockerd adopts the bridge's address as
// the default network's subnet when no --bip is given.
func createBridge(name string) (netip.Prefix, netip.Addr, error) {
	used, err := usedPrefixes()
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, err
	}
	var subnet netip.Prefix
	for range 100 {
		// 10.128.0.0/9 keeps clear of the low 10.x ranges that VPNs and
		// clouds tend to use.
		n, err := rand.Int(rand.Reader, big.NewInt(1<<15))
		if err != nil {
			return netip.Prefix{}, netip.Addr{}, fmt.Errorf("pick subnet: %w", err)
		}
		v := n.Int64()
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(128 + v>>8), byte(v), 0}), 24)
		if !overlapsAny(cand, used) {
			subnet = cand
			break
		}
	}
	if !subnet.IsValid() {
		return netip.Prefix{}, netip.Addr{}, errors.New("pick subnet: no free 10.x.y.0/24 found")
	}
	gw := subnet.Addr().Next()
	if out, err := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("create bridge %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	for _, args := range [][]string{
		{"addr", "add", netip.PrefixFrom(gw, 24).String(), "dev", name},
		{"link", "set", name, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return netip.Prefix{}, netip.Addr{}, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return subnet, gw, nil
}

func overlapsAny(p netip.Prefix, used []netip.Prefix) bool {
	for _, u := range used {
		if u.Overlaps(p) {
			return true
		}
	}
	return false
}

// usedPrefixes lists the IPv4 networks of all interface addresses and routes.
func usedPrefixes() ([]netip.Prefix, error) {
	var used []netip.Prefix
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP.To4()); ok {
				ones, _ := ipn.Mask.Size()
				used = append(used, netip.PrefixFrom(ip, ones).Masked())
			}
		}
	}
	// /proc/net/route: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
	// with little-endian hex addresses. The default route (mask 0) is skipped.
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return used, nil
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil || mask == 0 {
			continue
		}
		ip := netip.AddrFrom4([4]byte{byte(dst), byte(dst >> 8), byte(dst >> 16), byte(dst >> 24)})
		ones := 0
		for m := mask; m != 0; m >>= 1 {
			ones += int(m & 1)
		}
		used = append(used, netip.PrefixFrom(ip, ones).Masked())
	}
	return used, nil
}

var (
	probeOnce   sync.Once
	probeResult string
)

// probeStorageDriver returns "overlay2" if an overlay mount with its upper
// dir in /tmp works (much faster than vfs), else "vfs". /tmp may itself be
// overlay (in containers), where nested overlay fails.
func probeStorageDriver() string {
	probeOnce.Do(func() {
		probeResult = "vfs"
		dir, err := os.MkdirTemp("/tmp", "dtp")
		if err != nil {
			return
		}
		defer os.RemoveAll(dir)
		for _, sub := range []string{"lower", "upper", "work", "merged"} {
			if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
				return
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "lower", "f"), []byte("x"), 0o644); err != nil {
			return
		}
		merged := filepath.Join(dir, "merged")
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
			filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
		if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
			return
		}
		// Copy-up is what containers do on first write.
		werr := os.WriteFile(filepath.Join(merged, "f"), []byte("y"), 0o644)
		uerr := syscall.Unmount(merged, syscall.MNT_DETACH)
		if werr == nil && uerr == nil {
			probeResult = "overlay2"
		}
	})
	return probeResult
}

// ownerFile marks a daemon dir as ours and says who owns it, so that the
// reaper can tell abandoned dirs from live ones.
const ownerFile = "dockertest-owner"

// writeOwner records "pid starttime bridge" of the current process.
func writeOwner(dir, bridge string) error {
	st, err := procStartTime(os.Getpid())
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ownerFile+".tmp")
	data := fmt.Sprintf("%d %d %s\n", os.Getpid(), st, bridge)
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		return fmt.Errorf("write owner file: %w", err)
	}
	// Rename so a concurrent reaper never reads half a file.
	if err := os.Rename(tmp, filepath.Join(dir, ownerFile)); err != nil {
		return fmt.Errorf("write owner file: %w", err)
	}
	return nil
}

func readOwner(dir string) (pid int, start uint64, bridge string, err error) {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return 0, 0, "", err
	}
	if _, err := fmt.Sscanf(string(b), "%d %d %s", &pid, &start, &bridge); err != nil {
		return 0, 0, "", fmt.Errorf("parse %s: %w", filepath.Join(dir, ownerFile), err)
	}
	return pid, start, bridge, nil
}

// procStartTime returns field 22 (starttime) of /proc/pid/stat, which
// together with the pid identifies a process despite pid reuse.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm (field 2) may contain spaces and parens; fields after the last
	// ')' start with field 3.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: short", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}
