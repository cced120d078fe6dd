package network

import (
	"encoding/json"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// decodeOpts decodes an Options object as the Handler does.
func decodeOpts(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGenericOptions(t *testing.T) {
	for _, tc := range []struct {
		opts    string
		want    map[string]string
		wantErr string
	}{
		{`{}`, nil, ""},
		{`{"com.docker.network.generic":null}`, nil, ""},
		{`{"com.docker.network.generic":{}}`, map[string]string{}, ""},
		{`{"com.docker.network.generic":{"parent":"eth0","mode":"l2"},"com.docker.network.enable_ipv6":false}`, map[string]string{"parent": "eth0", "mode": "l2"}, ""},
		{`{"com.docker.network.generic":{"mtu":1400}}`, nil, `value of "mtu" is a number, want a string`},
		{`{"com.docker.network.generic":"parent=eth0"}`, nil, "got a string, want an object of strings"},
		{`{"com.docker.network.generic":[]}`, nil, "got an array"},
	} {
		got, err := GenericOptions(decodeOpts(t, tc.opts))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), OptionGeneric) {
				t.Errorf("%s: err %v, want %q", tc.opts, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %#v, %v", tc.opts, got, err)
		}
	}
	// Options built in Go (tests, in-process callers) work too.
	got, err := GenericOptions(map[string]any{OptionGeneric: map[string]string{"a": "b"}})
	if err != nil || got["a"] != "b" {
		t.Errorf("typed map: %v %v", got, err)
	}
}

func TestBoolAndStringOptions(t *testing.T) {
	opts := decodeOpts(t, `{"com.docker.network.enable_ipv6":true,"com.docker.network.internal":"yes","com.docker.network.endpoint.ifname":"eth7","n":null}`)
	if v, ok, err := BoolOption(opts, OptionEnableIPv6); !v || !ok || err != nil {
		t.Errorf("enable_ipv6: %v %v %v", v, ok, err)
	}
	// Absent: daemons before Engine 28 never send enable_ipv4.
	if v, ok, err := BoolOption(opts, OptionEnableIPv4); v || ok || err != nil {
		t.Errorf("enable_ipv4: %v %v %v", v, ok, err)
	}
	if _, _, err := BoolOption(opts, OptionInternal); err == nil || !strings.Contains(err.Error(), "got a string, want a bool") {
		t.Errorf("internal: %v", err)
	}
	if s, err := StringOption(opts, OptionIfname); s != "eth7" || err != nil {
		t.Errorf("ifname: %q %v", s, err)
	}
	if s, err := StringOption(opts, "n"); s != "" || err != nil {
		t.Errorf("null: %q %v", s, err)
	}
	if _, err := StringOption(opts, OptionEnableIPv6); err == nil {
		t.Error("bool read as string")
	}
}

func TestMacAddressOption(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	// What the daemon does: a net.HardwareAddr in the map, JSON-encoded.
	b, _ := json.Marshal(map[string]any{OptionMacAddress: mac})
	if string(b) != `{"com.docker.network.endpoint.macaddress":"AkKsEQAC"}` {
		t.Fatalf("daemon encoding changed? %s", b)
	}
	for _, tc := range []struct {
		opts    map[string]any
		want    string
		wantErr string
	}{
		{decodeOpts(t, string(b)), "02:42:ac:11:00:02", ""},
		{map[string]any{OptionMacAddress: mac}, "02:42:ac:11:00:02", ""},
		{map[string]any{OptionMacAddress: "02:42:ac:11:00:02"}, "02:42:ac:11:00:02", ""},
		{map[string]any{}, "", ""},
		{map[string]any{OptionMacAddress: nil}, "", ""},
		{map[string]any{OptionMacAddress: "AkKsEQACAAA="}, "", "8 bytes, want a 6-byte MAC address"},
		{map[string]any{OptionMacAddress: "not base64!"}, "", "neither base64 nor a MAC address"},
		{map[string]any{OptionMacAddress: 12.0}, "", "got a number"},
	} {
		got, err := MacAddressOption(tc.opts)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err %v, want %q", tc.opts, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%v: got %v, %v", tc.opts, got, err)
		}
	}
}

func TestPortOptions(t *testing.T) {
	// As dockerd encodes types.PortBinding and types.TransportPort.
	opts := decodeOpts(t, `{
		"com.docker.network.portmap":[
			{"Proto":6,"IP":"172.18.0.2","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080},
			{"Proto":17,"IP":"","Port":53,"HostIP":"::1","HostPort":0,"HostPortEnd":0}],
		"com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80},{"Proto":132,"Port":9}]}`)
	pm, err := PortMapOption(opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []PortBinding{
		{Proto: TCP, IP: netip.MustParseAddr("172.18.0.2"), Port: 80, HostPort: 8080, HostPortEnd: 8080},
		{Proto: UDP, Port: 53, HostIP: netip.MustParseAddr("::1")},
	}
	if !reflect.DeepEqual(pm, want) {
		t.Errorf("port map %+v", pm)
	}
	ep, err := ExposedPortsOption(opts)
	if err != nil || !reflect.DeepEqual(ep, []TransportPort{{TCP, 80}, {SCTP, 9}}) {
		t.Errorf("exposed %+v %v", ep, err)
	}
	if pm[0].Proto.String() != "tcp" || ep[1].Proto.String() != "sctp" || Protocol(99).String() != "99" {
		t.Error("Protocol.String")
	}
	if pm, err := PortMapOption(map[string]any{}); pm != nil || err != nil {
		t.Errorf("absent: %v %v", pm, err)
	}
	if _, err := PortMapOption(decodeOpts(t, `{"com.docker.network.portmap":[{"Port":"80"}]}`)); err == nil || !strings.Contains(err.Error(), OptionPortMap) {
		t.Errorf("bad port map: %v", err)
	}
	if _, err := ExposedPortsOption(decodeOpts(t, `{"com.docker.network.endpoint.exposedports":{"Port":80}}`)); err == nil {
		t.Error("object accepted as exposed ports")
	}
}

func TestNodeData(t *testing.T) {
	var n DiscoveryNotification
	if err := json.Unmarshal([]byte(`{"DiscoveryType":1,"DiscoveryData":{"Address":"10.0.0.5","BindAddress":"0.0.0.0","Self":true}}`), &n); err != nil {
		t.Fatal(err)
	}
	d, err := n.NodeData()
	if err != nil || *d != (NodeDiscoveryData{"10.0.0.5", "0.0.0.0", true}) {
		t.Errorf("NodeData %+v %v", d, err)
	}
	if _, err := (&DiscoveryNotification{DiscoveryType: 2}).NodeData(); err == nil {
		t.Error("type 2 decoded as node data")
	}
	if _, err := (&DiscoveryNotification{DiscoveryType: 1, DiscoveryData: "x"}).NodeData(); err == nil {
		t.Error("string decoded as node data")
	}
}

func TestCapabilitiesHelpers(t *testing.T) {
	if s := (&Capabilities{Scope: "global"}).EffectiveConnectivityScope(); s != "global" {
		t.Error(s)
	}
	if s := (&Capabilities{Scope: "global", ConnectivityScope: "local"}).EffectiveConnectivityScope(); s != "local" {
		t.Error(s)
	}
	for c, ok := range map[Capabilities]bool{
		{Scope: "local"}: true, {Scope: "global", ConnectivityScope: "local"}: true,
		{}: false, {Scope: "host"}: false, {Scope: "local", ConnectivityScope: "Global"}: false,
	} {
		if err := CheckCapabilities(&c); (err == nil) != ok {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if CheckCapabilities(nil) == nil {
		t.Error("nil capabilities accepted")
	}
}
