package bridge

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Link names. Bridges are named like docker's br-<12 hex>; veth ends by the
// endpoint ID. All fit IFNAMSIZ-1 = 15 bytes.
const (
	bridgePrefix = "dn-"
	hostPrefix   = "dnh" // host end, stays on the bridge
	peerPrefix   = "dnc" // container end: SrcName, moved by the daemon
	maxIfName    = 15
)

// bridgeName is the default bridge of network id.
func bridgeName(id string) string { return bridgePrefix + short(id) }

// vethNames are the host and container ends of endpoint id's veth.
func vethNames(id string) (host, peer string) {
	return hostPrefix + short(id), peerPrefix + short(id)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// checkIfName validates a user-given link name as the kernel does
// (dev_valid_name).
func checkIfName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty interface name")
	case len(s) > maxIfName:
		return fmt.Errorf("interface name %q is longer than %d bytes", s, maxIfName)
	case s == "." || s == "..":
		return fmt.Errorf("interface name %q is not allowed", s)
	case strings.ContainsAny(s, "/: \t\n\x00"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", s)
	}
	return nil
}

// alias tags the links an instance owns (IFLA_IFALIAS), so reconcile can
// tell its own links from everybody else's, including other dockplug-net
// instances on the same host.
func aliasPrefix(instance string) string { return "dockplug-net:" + instance + ":" }

func netAlias(instance, netID string) string { return aliasPrefix(instance) + "net:" + netID }
func epAlias(instance, epID string) string   { return aliasPrefix(instance) + "ep:" + epID }

// parseAlias returns the kind ("net" or "ep") and ID of one of instance's
// aliases.
func parseAlias(instance, alias string) (kind, id string, ok bool) {
	rest, ok := strings.CutPrefix(alias, aliasPrefix(instance))
	if !ok {
		return "", "", false
	}
	kind, id, ok = strings.Cut(rest, ":")
	if !ok || id == "" || (kind != "net" && kind != "ep") {
		return "", "", false
	}
	return kind, id, true
}

// macFromIPv4 derives a container MAC from its IPv4 address as docker's
// bridge did: 02:42 followed by the four address bytes (locally
// administered, unicast).
func macFromIPv4(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}
