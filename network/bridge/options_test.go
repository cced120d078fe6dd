package bridge

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dockplug/dockplug/network"
)

func TestParseNetOptionsDefaults(t *testing.T) {
	o, err := parseNetOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o != (netOptions{ICC: true, Masquerade: true, IfPrefix: "eth"}) {
		t.Errorf("defaults: %+v", o)
	}
}

func TestParseNetOptions(t *testing.T) {
	o, err := parseNetOptions(map[string]string{
		"com.docker.network.bridge.name": "br-x", "mtu": "1400", "icc": "false",
		"com.docker.network.bridge.enable_ip_masquerade": "0",
		"host_binding_ipv4": "127.0.0.1", "container_iface_prefix": "net",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := netOptions{Bridge: "br-x", MTU: 1400, HostIP: netip.MustParseAddr("127.0.0.1"), IfPrefix: "net"}
	if o != want {
		t.Errorf("got %+v, want %+v", o, want)
	}
	if o, _ := parseNetOptions(map[string]string{"host_binding_ipv4": "0.0.0.0"}); o.HostIP.IsValid() {
		t.Errorf("0.0.0.0 must mean every address, got %v", o.HostIP)
	}
}

func TestParseNetOptionsErrors(t *testing.T) {
	for _, c := range []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"nope": "1"}, `unknown option "nope"`},
		{map[string]string{"mtu": "x"}, `option mtu="x"`},
		{map[string]string{"mtu": "67"}, "not between"},
		{map[string]string{"mtu": "65536"}, "not between"},
		{map[string]string{"icc": "yes please"}, "option icc"},
		{map[string]string{"masquerade": ""}, "option masquerade"},
		{map[string]string{"bridge": "0123456789abcdef"}, "longer than 15"},
		{map[string]string{"bridge": ""}, "empty interface name"},
		{map[string]string{"icc": "true", "com.docker.network.bridge.enable_icc": "true"}, "given twice"},
		{map[string]string{"host_binding_ipv4": "::1"}, "not an IPv4"},
		{map[string]string{"host_binding_ipv4": "localhost"}, "host_binding_ipv4"},
		{map[string]string{"container_iface_prefix": "eth0"}, "not ending in a digit"},
		{map[string]string{"container_iface_prefix": ""}, "container_iface_prefix"},
	} {
		_, err := parseNetOptions(c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.opts, err, c.want)
		}
	}
}

func TestNewNetRecord(t *testing.T) {
	req := &network.CreateNetworkRequest{
		NetworkID: "0123456789abcdef",
		Options: map[string]any{
			network.OptionGeneric:  map[string]any{"icc": "false"},
			network.OptionInternal: true,
		},
		IPv4Data: []*network.IPAMData{{Pool: "10.1.2.0/24", Gateway: "10.1.2.1/24"}},
		IPv6Data: []*network.IPAMData{{Pool: "fd00::/64"}},
	}
	n, err := newNetRecord(req)
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != "dn-0123456789ab" || n.ICC || !n.Internal || len(n.IPv4) != 1 || len(n.IPv6) != 1 ||
		n.IPv4[0].Gateway != netip.MustParsePrefix("10.1.2.1/24") || n.IPv6[0].Gateway.IsValid() {
		t.Errorf("record %+v", n)
	}
	for _, bad := range []*network.CreateNetworkRequest{
		{NetworkID: "x", IPv4Data: []*network.IPAMData{{Pool: "10.1.2.0/24", Gateway: "10.9.9.1/24"}}},
		{NetworkID: "x", IPv4Data: []*network.IPAMData{{Pool: "fd00::/64"}}},
		{NetworkID: "x"},
		{NetworkID: "x", Options: map[string]any{network.OptionInternal: "yes"}, IPv4Data: []*network.IPAMData{{Pool: "10.1.2.0/24"}}},
		{NetworkID: "x", Options: map[string]any{network.OptionGeneric: "mtu=1"}, IPv4Data: []*network.IPAMData{{Pool: "10.1.2.0/24"}}},
	} {
		if _, err := newNetRecord(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestOverlaps(t *testing.T) {
	a := []subnet{{Pool: netip.MustParsePrefix("10.0.0.0/24")}}
	b := []subnet{{Pool: netip.MustParsePrefix("10.0.1.0/24")}, {Pool: netip.MustParsePrefix("10.0.0.128/25")}}
	if x, y, ok := overlaps(a, b); !ok || x != a[0].Pool || y != b[1].Pool {
		t.Errorf("overlaps: %v %v %v", x, y, ok)
	}
	if _, _, ok := overlaps(a, b[:1]); ok {
		t.Error("disjoint pools overlap")
	}
}

// FuzzNetOptions: parsing the user's -o options never panics, and
// accepted options are within bounds.
func FuzzNetOptions(f *testing.F) {
	f.Add("mtu", "1500", "bridge", "br0")
	f.Add("icc", "false", "com.docker.network.bridge.enable_icc", "true")
	f.Add("host_binding_ipv4", "127.0.0.1", "container_iface_prefix", "eth")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		o, err := parseNetOptions(map[string]string{k1: v1, k2: v2})
		if err != nil {
			return
		}
		if o.MTU != 0 && (o.MTU < 68 || o.MTU > 65535) {
			t.Errorf("mtu %d accepted", o.MTU)
		}
		if o.Bridge != "" && checkIfName(o.Bridge) != nil {
			t.Errorf("bridge %q accepted", o.Bridge)
		}
		if o.HostIP.IsValid() && !o.HostIP.Is4() {
			t.Errorf("host IP %v accepted", o.HostIP)
		}
	})
}
