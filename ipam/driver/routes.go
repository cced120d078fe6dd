package driver

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// HostRoutes returns the destinations of this host's IPv4 and IPv6 routes
// (default routes excepted), which a dynamic local pool must not overlap.
// It reads /proc rather than netlink: same data, no dependency.
func HostRoutes() ([]netip.Prefix, error) {
	v4, err := readRoutes("/proc/net/route", parseV4Route)
	if err != nil {
		return nil, err
	}
	v6, err := readRoutes("/proc/net/ipv6_route", parseV6Route)
	if err != nil && !os.IsNotExist(err) { // IPv6 may be disabled
		return nil, err
	}
	return append(v4, v6...), nil
}

func readRoutes(path string, parse func([]string) (netip.Prefix, bool)) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := parse(strings.Fields(sc.Text())); ok && p.Bits() > 0 {
			out = append(out, p.Masked())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// /proc/net/route: Iface Destination Gateway Flags RefCnt Use Metric Mask ...
// with addresses as little-endian hex.
func parseV4Route(f []string) (netip.Prefix, bool) {
	if len(f) < 8 || f[0] == "Iface" {
		return netip.Prefix{}, false
	}
	dst, err1 := strconv.ParseUint(f[1], 16, 32)
	mask, err2 := strconv.ParseUint(f[7], 16, 32)
	if err1 != nil || err2 != nil {
		return netip.Prefix{}, false
	}
	d := uint32(dst)
	addr := netip.AddrFrom4([4]byte{byte(d), byte(d >> 8), byte(d >> 16), byte(d >> 24)})
	m := uint32(mask)
	bits := 0
	for m != 0 {
		bits += int(m & 1)
		m >>= 1
	}
	return netip.PrefixFrom(addr, bits), true
}

// /proc/net/ipv6_route: dest(32 hex) dest_len(hex) src src_len next_hop ...
func parseV6Route(f []string) (netip.Prefix, bool) {
	if len(f) < 2 {
		return netip.Prefix{}, false
	}
	b, err := hex.DecodeString(f[0])
	if err != nil || len(b) != 16 {
		return netip.Prefix{}, false
	}
	bits, err := strconv.ParseUint(f[1], 16, 8)
	if err != nil || bits > 128 {
		return netip.Prefix{}, false
	}
	addr := netip.AddrFrom16([16]byte(b))
	if addr.IsLinkLocalUnicast() || addr.IsMulticast() || bits == 128 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(addr, int(bits)), true
}
