package network

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Well-known option keys (daemon/libnetwork/netlabel).
const (
	// OptionGeneric (CreateNetwork) is an object of strings: the user's
	// -o/--opt driver options, or daemon.json default-network-opts.
	OptionGeneric = "com.docker.network.generic"
	// OptionEnableIPv4 and OptionEnableIPv6 (CreateNetwork) are bools.
	// Daemons before Engine 28 do not send OptionEnableIPv4.
	OptionEnableIPv4 = "com.docker.network.enable_ipv4"
	OptionEnableIPv6 = "com.docker.network.enable_ipv6"
	// OptionInternal (CreateNetwork) is true for --internal networks.
	OptionInternal = "com.docker.network.internal"
	// OptionMacAddress (CreateEndpoint) is the user's --mac-address as a
	// Go net.HardwareAddr, so base64 of the raw bytes; see MacAddressOption.
	OptionMacAddress = "com.docker.network.endpoint.macaddress"
	// OptionPortMap (CreateEndpoint, Join) is an array of PortBinding.
	OptionPortMap = "com.docker.network.portmap"
	// OptionExposedPorts (CreateEndpoint, Join) is an array of
	// TransportPort.
	OptionExposedPorts = "com.docker.network.endpoint.exposedports"
	// OptionIfname (CreateEndpoint) is the interface name the user asked
	// for. The daemon does not apply it for remote drivers (G17); a driver
	// may honour it with InterfaceName.DstName on daemons that do.
	OptionIfname = "com.docker.network.endpoint.ifname"
	// OptionNoProxy6To4 (ProgramExternalConnectivity) is true when another
	// endpoint is the sandbox's IPv6 gateway.
	OptionNoProxy6To4 = "com.docker.network.driver.private.no_proxy_6to4"
)

// GenericOptions returns the user's -o options of a CreateNetwork (or
// GwAllocCheck) Options map: the strings under OptionGeneric. A missing or
// null entry gives nil and no error.
func GenericOptions(opts map[string]any) (map[string]string, error) {
	v, ok := opts[OptionGeneric]
	if !ok || v == nil {
		return nil, nil
	}
	switch g := v.(type) {
	case map[string]string: // built in Go rather than decoded
		return g, nil
	case map[string]any:
		out := make(map[string]string, len(g))
		for k, x := range g {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("option %s: value of %q is %s, want a string", OptionGeneric, k, jsonKind(x))
			}
			out[k] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("option %s: got %s, want an object of strings", OptionGeneric, jsonKind(v))
}

// BoolOption returns the bool under key (OptionEnableIPv4,
// OptionEnableIPv6, OptionInternal...). ok is false if the key is absent or
// null. Note that a missing OptionEnableIPv4 means IPv4 is on: daemons
// before Engine 28 did not send it.
func BoolOption(opts map[string]any, key string) (value, ok bool, err error) {
	v, present := opts[key]
	if !present || v == nil {
		return false, false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, false, fmt.Errorf("option %s: got %s, want a bool", key, jsonKind(v))
	}
	return b, true, nil
}

// StringOption returns the string under key, e.g. OptionIfname or a user's
// --driver-opt key in CreateEndpoint options ("" if absent or null).
func StringOption(opts map[string]any, key string) (string, error) {
	v, present := opts[key]
	if !present || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("option %s: got %s, want a string", key, jsonKind(v))
	}
	return s, nil
}

// MacAddressOption decodes OptionMacAddress from CreateEndpoint options.
// The daemon sends a Go net.HardwareAddr, which JSON-encodes as the base64
// of its 6 raw bytes ("AkIAAAAB"), not as "02:42:00:00:00:01". The colon
// form is accepted too, for hand-written requests. nil if absent.
func MacAddressOption(opts map[string]any) (net.HardwareAddr, error) {
	v, present := opts[OptionMacAddress]
	if !present || v == nil {
		return nil, nil
	}
	var raw []byte
	switch m := v.(type) {
	case net.HardwareAddr: // built in Go rather than decoded
		raw = m
	case []byte:
		raw = m
	case string:
		b, err := base64.StdEncoding.DecodeString(m)
		if err != nil {
			hw, perr := net.ParseMAC(m)
			if perr != nil {
				return nil, fmt.Errorf("option %s: %q is neither base64 nor a MAC address", OptionMacAddress, m)
			}
			b = hw
		}
		raw = b
	default:
		return nil, fmt.Errorf("option %s: got %s, want a base64 string", OptionMacAddress, jsonKind(v))
	}
	if len(raw) != 6 {
		return nil, fmt.Errorf("option %s: %d bytes, want a 6-byte MAC address", OptionMacAddress, len(raw))
	}
	return net.HardwareAddr(append([]byte(nil), raw...)), nil
}

// Protocol is an IP protocol number, as the daemon encodes it in port maps.
type Protocol uint8

// Protocols seen in port maps.
const (
	ICMP Protocol = 1
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case ICMP:
		return "icmp"
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// PortBinding is one element of OptionPortMap (libnetwork types.PortBinding):
// container IP:Port published on HostIP:HostPort[-HostPortEnd]. IPs are
// strings; the zero Addr stands for "" (unset).
type PortBinding struct {
	Proto       Protocol   `json:"Proto"`
	IP          netip.Addr `json:"IP"`
	Port        uint16     `json:"Port"`
	HostIP      netip.Addr `json:"HostIP"`
	HostPort    uint16     `json:"HostPort"`
	HostPortEnd uint16     `json:"HostPortEnd"`
}

// TransportPort is one element of OptionExposedPorts.
type TransportPort struct {
	Proto Protocol `json:"Proto"`
	Port  uint16   `json:"Port"`
}

// PortMapOption decodes OptionPortMap (nil if absent).
func PortMapOption(opts map[string]any) ([]PortBinding, error) {
	var out []PortBinding
	if err := reDecode(opts, OptionPortMap, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ExposedPortsOption decodes OptionExposedPorts (nil if absent).
func ExposedPortsOption(opts map[string]any) ([]TransportPort, error) {
	var out []TransportPort
	if err := reDecode(opts, OptionExposedPorts, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// NodeData decodes the DiscoveryData of a NodeDiscovery notification.
func (n *DiscoveryNotification) NodeData() (*NodeDiscoveryData, error) {
	if n.DiscoveryType != NodeDiscovery {
		return nil, fmt.Errorf("discovery type %d is not node discovery", n.DiscoveryType)
	}
	var d NodeDiscoveryData
	if err := reDecode(map[string]any{"DiscoveryData": n.DiscoveryData}, "DiscoveryData", &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// reDecode decodes opts[key] into v through JSON, so that it works both on
// maps decoded from the wire (map[string]any, []any, float64) and on maps
// built in Go with typed values.
func reDecode(opts map[string]any, key string, v any) error {
	x, present := opts[key]
	if !present || x == nil {
		return nil
	}
	b, err := json.Marshal(x)
	if err != nil {
		return fmt.Errorf("option %s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("option %s: %w", key, err)
	}
	return nil
}

// jsonKind names the JSON kind of a decoded value, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a bool"
	case float64, json.Number, int, int64, uint16:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
