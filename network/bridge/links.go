package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Kernel links and addresses, through netlink (never the ip tool).

func linkByName(name string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	return l, err
}

// ensureBridge makes (or repairs) the bridge of n: the link with our alias,
// its MTU, its gateway addresses, its sysctls, up. It refuses a link of
// that name that is not ours.
func ensureBridge(instance string, n *netRecord) error {
	alias := netAlias(instance, n.ID)
	l, err := linkByName(n.Bridge)
	if err != nil {
		return fmt.Errorf("look up bridge %s: %w", n.Bridge, err)
	}
	if l != nil && l.Attrs().Alias != alias {
		return fmt.Errorf("interface %s already exists and is not this network's bridge", n.Bridge)
	}
	if l == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = n.Bridge
		attrs.MTU = n.MTU
		br := &netlink.Bridge{LinkAttrs: attrs}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		if l, err = netlink.LinkByName(n.Bridge); err != nil {
			return fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
		if err := netlink.LinkSetAlias(l, alias); err != nil {
			netlink.LinkDel(l)
			return fmt.Errorf("bridge %s: set alias: %w", n.Bridge, err)
		}
	}
	if n.MTU != 0 && l.Attrs().MTU != n.MTU {
		if err := netlink.LinkSetMTU(l, n.MTU); err != nil {
			return fmt.Errorf("bridge %s: mtu %d: %w", n.Bridge, n.MTU, err)
		}
	}
	// Sysctls before addresses and up: IPv6 must not autoconfigure.
	sysctls := map[string]string{
		"ipv4/conf/" + n.Bridge + "/route_localnet": "1", // 127.0.0.1 published ports (see rules.go)
		"ipv4/conf/" + n.Bridge + "/forwarding":     "0",
	}
	if !n.Internal {
		sysctls["ipv4/conf/"+n.Bridge+"/forwarding"] = "1"
	}
	if len(n.IPv6) > 0 {
		sysctls["ipv6/conf/"+n.Bridge+"/accept_ra"] = "0"
	}
	for k, v := range sysctls {
		if err := writeSysctl(k, v); err != nil {
			return fmt.Errorf("bridge %s: %w", n.Bridge, err)
		}
	}
	have, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("bridge %s: list addresses: %w", n.Bridge, err)
	}
	for _, s := range append(append([]subnet(nil), n.IPv4...), n.IPv6...) {
		if !s.Gateway.IsValid() || hasAddr(have, s.Gateway) {
			continue
		}
		a := &netlink.Addr{IPNet: ipNet(s.Gateway)}
		if s.Gateway.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD // usable at once, like docker's
		}
		if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("bridge %s: add %s: %w", n.Bridge, s.Gateway, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bridge %s: up: %w", n.Bridge, err)
	}
	return nil
}

func hasAddr(list []netlink.Addr, p netip.Prefix) bool {
	for _, a := range list {
		if a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ok && ip.Unmap() == p.Addr() && ones == p.Bits() {
			return true
		}
	}
	return false
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys/net", key)
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// deleteLink removes a link if it exists and carries alias (so a name
// reused by someone else is never deleted).
func deleteLink(name, alias string) error {
	l, err := linkByName(name)
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if l == nil || l.Attrs().Alias != alias {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// makeVeth creates endpoint e's veth pair: the host end on the bridge, up
// (isolated when the network has icc=false); the peer, with the endpoint's
// MAC and the network's MTU, left for the daemon to move.
func makeVeth(instance string, n *netRecord, e *epRecord) error {
	alias := epAlias(instance, e.ID)
	// A retried Join: start again from nothing.
	if err := deleteLink(e.HostIf, alias); err != nil {
		return err
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = e.HostIf
	attrs.MTU = n.MTU
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: e.PeerIf}
	if e.MAC != "" {
		if v.PeerHardwareAddr, err = net.ParseMAC(e.MAC); err != nil {
			return fmt.Errorf("endpoint MAC %q: %w", e.MAC, err)
		}
	}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth %s: %w", e.HostIf, err)
	}
	fail := func(err error) error {
		_ = deleteLink(e.HostIf, alias)
		if l, _ := linkByName(e.HostIf); l != nil && l.Attrs().Alias == "" {
			netlink.LinkDel(l)
		}
		return err
	}
	host, err := netlink.LinkByName(e.HostIf)
	if err != nil {
		return fail(fmt.Errorf("veth %s: %w", e.HostIf, err))
	}
	if err := netlink.LinkSetAlias(host, alias); err != nil {
		return fail(fmt.Errorf("veth %s: alias: %w", e.HostIf, err))
	}
	if err := attachPort(n, host, br); err != nil {
		return fail(err)
	}
	return nil
}

// attachPort puts a host veth end on the bridge with the network's port
// settings, and up.
func attachPort(n *netRecord, host, br netlink.Link) error {
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := netlink.LinkSetMaster(host, br); err != nil {
			return fmt.Errorf("veth %s: attach to %s: %w", host.Attrs().Name, n.Bridge, err)
		}
	}
	if err := netlink.LinkSetIsolated(host, !n.ICC); err != nil {
		return fmt.Errorf("veth %s: isolation: %w", host.Attrs().Name, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("veth %s: up: %w", host.Attrs().Name, err)
	}
	return nil
}

// ourLinks lists the links that carry one of instance's aliases: kind
// ("net"/"ep") and ID by link name.
func ourLinks(instance string) (map[string][2]string, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := map[string][2]string{}
	for _, l := range ls {
		if kind, id, ok := parseAlias(instance, l.Attrs().Alias); ok {
			out[l.Attrs().Name] = [2]string{kind, id}
		}
	}
	return out, nil
}

// repairPort re-attaches a joined endpoint's host end after a restart.
func repairPort(n *netRecord, e *epRecord) error {
	host, err := netlink.LinkByName(e.HostIf)
	if err != nil {
		return fmt.Errorf("veth %s: %w", e.HostIf, err)
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	return attachPort(n, host, br)
}
