package bridge

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/dockplug/dockplug/network"
)

// Network options (-o, in com.docker.network.generic). Each has a short
// name and, where docker's built-in bridge has the same knob, that
// driver's long name too, so `-o com.docker.network.bridge.name=br0`
// works as it does with -d bridge.
const (
	OptBridge        = "bridge"
	OptMTU           = "mtu"
	OptICC           = "icc"
	OptMasquerade    = "masquerade"
	OptHostBindingV4 = "host_binding_ipv4"
	OptIfPrefix      = "container_iface_prefix"
)

var longNames = map[string]string{
	"com.docker.network.bridge.name":                 OptBridge,
	"com.docker.network.driver.mtu":                  OptMTU,
	"com.docker.network.bridge.enable_icc":           OptICC,
	"com.docker.network.bridge.enable_ip_masquerade": OptMasquerade,
	"com.docker.network.bridge.host_binding_ipv4":    OptHostBindingV4,
	"com.docker.network.container_iface_prefix":      OptIfPrefix,
}

// netOptions are a network's settings from its -o options.
type netOptions struct {
	Bridge     string     // "" = derived from the network ID
	MTU        int        // 0 = the kernel's default (1500)
	ICC        bool       // containers of the network may talk to each other
	Masquerade bool       // source NAT of outbound traffic
	HostIP     netip.Addr // default HostIP of published ports; zero = every host address
	IfPrefix   string     // in-container interface prefix (DstPrefix)
}

// parseNetOptions validates the user's options: unknown keys, bad values
// and a key given under both its names are errors.
func parseNetOptions(generic map[string]string) (netOptions, error) {
	o := netOptions{ICC: true, Masquerade: true, IfPrefix: "eth"}
	seen := map[string]string{}
	keys := make([]string, 0, len(generic))
	for k := range generic {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic errors
	for _, key := range keys {
		v := generic[key]
		k := key
		if s, ok := longNames[k]; ok {
			k = s
		}
		if prev, dup := seen[k]; dup {
			return o, fmt.Errorf("option %s given twice (as %s and %s)", k, prev, key)
		}
		seen[k] = key
		var err error
		switch k {
		case OptBridge:
			if err = checkIfName(v); err == nil {
				o.Bridge = v
			}
		case OptMTU:
			o.MTU, err = strconv.Atoi(v)
			if err == nil && (o.MTU < 68 || o.MTU > 65535) {
				err = fmt.Errorf("%d is not between 68 and 65535", o.MTU)
			}
		case OptICC:
			o.ICC, err = strconv.ParseBool(v)
		case OptMasquerade:
			o.Masquerade, err = strconv.ParseBool(v)
		case OptHostBindingV4:
			o.HostIP, err = netip.ParseAddr(v)
			if err == nil && !o.HostIP.Is4() {
				err = fmt.Errorf("%s is not an IPv4 address", v)
			}
			if err == nil && o.HostIP.IsUnspecified() {
				o.HostIP = netip.Addr{}
			}
		case OptIfPrefix:
			if v == "" || len(v) > maxIfName-2 || strings.ContainsAny(v, "/: \t\n\x00") || strings.ContainsAny(v[len(v)-1:], "0123456789") {
				err = fmt.Errorf("want 1 to %d name characters, not ending in a digit", maxIfName-2)
			}
			o.IfPrefix = v
		default:
			return o, fmt.Errorf("unknown option %q (known: %s)", key, strings.Join(knownOptions(), ", "))
		}
		if err != nil {
			return o, fmt.Errorf("option %s=%q: %w", key, v, err)
		}
	}
	return o, nil
}

func knownOptions() []string {
	return []string{OptBridge, OptMTU, OptICC, OptMasquerade, OptHostBindingV4, OptIfPrefix}
}

// subnet is one pool of a network and its gateway on the bridge.
type subnet struct {
	Pool    netip.Prefix `json:"pool"`
	Gateway netip.Prefix `json:"gateway,omitzero"` // address with the pool's length; zero = none
}

// parsePools converts the daemon's IPAMData.
func parsePools(field string, in []*network.IPAMData) ([]subnet, error) {
	var out []subnet
	for i, d := range in {
		p, err := netip.ParsePrefix(d.Pool)
		if err != nil {
			return nil, fmt.Errorf("%s[%d].Pool: %w", field, i, err)
		}
		s := subnet{Pool: p.Masked()}
		if d.Gateway != "" {
			g, err := netip.ParsePrefix(d.Gateway)
			if err != nil {
				return nil, fmt.Errorf("%s[%d].Gateway: %w", field, i, err)
			}
			if !s.Pool.Contains(g.Addr()) {
				return nil, fmt.Errorf("%s[%d]: gateway %s is outside pool %s", field, i, g, s.Pool)
			}
			s.Gateway = netip.PrefixFrom(g.Addr(), s.Pool.Bits())
		}
		out = append(out, s)
	}
	return out, nil
}

// overlaps reports the first pool of a that overlaps one of b.
func overlaps(a, b []subnet) (netip.Prefix, netip.Prefix, bool) {
	for _, x := range a {
		for _, y := range b {
			if x.Pool.Overlaps(y.Pool) {
				return x.Pool, y.Pool, true
			}
		}
	}
	return netip.Prefix{}, netip.Prefix{}, false
}
