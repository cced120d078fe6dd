package bridge

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/dockplug/dockplug/network"
)

// Host ports. DNAT happens before the socket lookup, so a published port
// needs no listener; the driver still binds (without listening) a socket on
// every host port it publishes. That makes a port some other process holds
// a clear error, and keeps other processes off ports the driver publishes
// while the mapping lives. After a restart the sockets are bound again.

// reservation is one bound socket.
type reservation struct{ fd int }

func (r *reservation) close() {
	if r != nil && r.fd >= 0 {
		syscall.Close(r.fd)
		r.fd = -1
	}
}

// reserve binds proto hostIP:port (zero hostIP: every address).
func reserve(proto network.Protocol, hostIP netip.Addr, port uint16) (*reservation, error) {
	var typ int
	switch proto {
	case network.TCP:
		typ = syscall.SOCK_STREAM
	case network.UDP:
		typ = syscall.SOCK_DGRAM
	case network.SCTP:
		typ = syscall.SOCK_SEQPACKET
	default:
		return nil, fmt.Errorf("protocol %s cannot be published", proto)
	}
	fd, err := syscall.Socket(syscall.AF_INET, typ|syscall.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	sa := &syscall.SockaddrInet4{Port: int(port)}
	if hostIP.IsValid() {
		sa.Addr = hostIP.As4()
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &reservation{fd: fd}, nil
}

// bindError explains a failed reservation to the user.
func bindError(proto network.Protocol, hostIP netip.Addr, port uint16, err error) error {
	h := "0.0.0.0"
	if hostIP.IsValid() {
		h = hostIP.String()
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("host port %s:%d/%s is already in use", h, port, proto)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("cannot publish on %s:%d/%s: %s is not an address of this host", h, port, proto, h)
	}
	return fmt.Errorf("reserve host port %s:%d/%s: %w", h, port, proto, err)
}

// ephemeralRange is the kernel's local port range, where a random host port
// is chosen, as dockerd does.
func ephemeralRange() (lo, hi uint16) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	a, err1 := strconv.Atoi(f[0])
	z, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || a < 1 || z > 65535 || a > z {
		return lo, hi
	}
	return uint16(a), uint16(z)
}

// wanted is a binding from the daemon, validated.
type wanted struct {
	Proto          network.Protocol
	HostIP         netip.Addr
	HostLo, HostHi uint16 // 0, 0: any
	IP             netip.Addr
	Port           uint16
}

// parseBindings validates the daemon's port map for an endpoint with IPv4
// address ip. IPv6 bindings (HostIP ::) are skipped: the driver publishes
// IPv4 only. defaultHostIP applies to bindings without HostIP.
func parseBindings(in []network.PortBinding, ip, defaultHostIP netip.Addr) ([]wanted, []string, error) {
	var out []wanted
	var skipped []string
	for _, b := range in {
		if b.HostIP.Is6() && !b.HostIP.Is4In6() {
			skipped = append(skipped, fmt.Sprintf("[%s]:%d/%s (IPv6 host address)", b.HostIP, b.HostPort, b.Proto))
			continue
		}
		switch b.Proto {
		case network.TCP, network.UDP, network.SCTP:
		default:
			return nil, nil, fmt.Errorf("port %d: protocol %s cannot be published", b.Port, b.Proto)
		}
		if b.Port == 0 {
			return nil, nil, fmt.Errorf("port map without a container port")
		}
		w := wanted{Proto: b.Proto, HostIP: b.HostIP.Unmap(), HostLo: b.HostPort, HostHi: b.HostPortEnd, IP: ip, Port: b.Port}
		switch {
		case !w.HostIP.IsValid(): // none given (-p 80, -p 8080:80)
			w.HostIP = defaultHostIP
		case w.HostIP.IsUnspecified(): // -p 0.0.0.0:8080:80: every address, whatever the default
			w.HostIP = netip.Addr{}
		}
		if w.HostHi < w.HostLo {
			w.HostHi = w.HostLo
		}
		if w.HostLo == 0 && w.HostHi != 0 {
			return nil, nil, fmt.Errorf("port %d: host port range 0-%d", b.Port, b.HostPortEnd)
		}
		out = append(out, w)
	}
	return out, skipped, nil
}

// pick reserves a host port for w: its one port, the first free one of its
// range, or a random free one of the ephemeral range.
func pick(w wanted, rnd *rand.Rand) (portMap, *reservation, error) {
	lo, hi := w.HostLo, w.HostHi
	random := lo == 0
	if random {
		lo, hi = ephemeralRange()
	}
	n := int(hi) - int(lo) + 1
	start := 0
	if random {
		start = rnd.IntN(n)
	}
	var firstErr error
	for i := range n {
		port := uint16(int(lo) + (start+i)%n)
		r, err := reserve(w.Proto, w.HostIP, port)
		if err == nil {
			return portMap{Proto: w.Proto, HostIP: w.HostIP, HostPort: port, IP: w.IP, Port: w.Port}, r, nil
		}
		if firstErr == nil {
			firstErr = bindError(w.Proto, w.HostIP, port, err)
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return portMap{}, nil, firstErr
		}
	}
	if n == 1 {
		return portMap{}, nil, firstErr
	}
	return portMap{}, nil, fmt.Errorf("no free host port in %d-%d for %d/%s", lo, hi, w.Port, w.Proto)
}
