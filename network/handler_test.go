package network

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dockplug/dockplug/plugin"
)

var ctx = context.Background()

func TestMethodsRegistered(t *testing.T) {
	mandatory := []string{
		"NetworkDriver.CreateEndpoint", "NetworkDriver.CreateNetwork", "NetworkDriver.DeleteEndpoint",
		"NetworkDriver.DeleteNetwork", "NetworkDriver.EndpointOperInfo", "NetworkDriver.GetCapabilities",
		"NetworkDriver.Join", "NetworkDriver.Leave",
	}
	optional := []string{
		"NetworkDriver.AllocateNetwork", "NetworkDriver.DiscoverDelete", "NetworkDriver.DiscoverNew",
		"NetworkDriver.FreeNetwork", "NetworkDriver.GwAllocCheck",
		"NetworkDriver.ProgramExternalConnectivity", "NetworkDriver.RevokeExternalConnectivity",
	}
	names := func(h *Handler) []string {
		var out []string
		for k := range h.Methods() {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if got := names(NewHandler(&fakeDriver{})); !slices.Equal(got, mandatory) {
		t.Errorf("mandatory-only driver serves %v", got)
	}
	all := slices.Sorted(slices.Values(append(slices.Clone(mandatory), optional...)))
	if got := names(NewHandler(fullDriver{&fakeDriver{}})); !slices.Equal(got, all) {
		t.Errorf("full driver serves %v", got)
	}
	if got := NewHandler(&fakeDriver{}).Implements(); got != "NetworkDriver" {
		t.Errorf("Implements() = %q", got)
	}
}

func TestActivate(t *testing.T) {
	_, pc := serve(t, &fakeDriver{})
	m, err := pc.Activate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Has("NetworkDriver") {
		t.Errorf("Implements = %v", m.Implements)
	}
}

func TestGetCapabilities(t *testing.T) {
	d := &fakeDriver{caps: &Capabilities{Scope: ScopeGlobal, GwAllocChecker: true}}
	c, pc := serve(t, fullDriver{d})
	caps, err := c.GetCapabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if *caps != (Capabilities{Scope: "global", GwAllocChecker: true}) || caps.EffectiveConnectivityScope() != "global" {
		t.Errorf("caps = %+v", caps)
	}
	// The daemon sends no body, and a {} body does no harm either (G19).
	for _, args := range []any{nil, struct{}{}} {
		body, err := pc.CallRaw(ctx, "NetworkDriver.GetCapabilities", args)
		if err != nil {
			t.Fatalf("args %v: %v", args, err)
		}
		if got := strings.TrimSpace(string(body)); got != `{"Scope":"global","ConnectivityScope":"","GwAllocChecker":true}` {
			t.Errorf("body = %s", got)
		}
	}
}

func TestGetCapabilitiesSendsEmptyBody(t *testing.T) {
	rec := &recorder{answers: map[string]rawAnswer{"": {body: `{"Scope":"local"}`}}}
	c := rawServe(t, rec)
	if _, err := c.GetCapabilities(ctx); err != nil {
		t.Fatal(err)
	}
	if _, bodies := rec.seen(); len(bodies) != 1 || len(bodies[0]) != 0 {
		t.Errorf("GetCapabilities sent bodies %q, the daemon sends none", bodies)
	}
}

func TestGetCapabilitiesDriverBugs(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Driver
		want string
	}{
		{"no scope", &fakeDriver{caps: &Capabilities{}}, "expecting 'local' or 'global', got "},
		{"bad scope", &fakeDriver{caps: &Capabilities{Scope: "Local"}}, "got Local"},
		{"bad connectivity", &fakeDriver{caps: &Capabilities{Scope: "local", ConnectivityScope: "swarm"}}, "got swarm"},
		{"checker without method", &fakeDriver{caps: &Capabilities{Scope: "local", GwAllocChecker: true}}, "no GwAllocCheck method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := serve(t, tc.d)
			_, err := c.GetCapabilities(ctx)
			se := statusOf(t, err)
			if se.Status != 500 || !strings.HasPrefix(se.Msg, "driver bug: ") || !strings.Contains(se.Msg, tc.want) {
				t.Errorf("got %d %q, want 500 driver bug with %q", se.Status, se.Msg, tc.want)
			}
		})
	}
}

// nilCapsDriver returns a nil *Capabilities, which must not crash the Handler.
type nilCapsDriver struct{ *fakeDriver }

func (nilCapsDriver) GetCapabilities(context.Context) (*Capabilities, error) { return nil, nil }

func TestGetCapabilitiesNil(t *testing.T) {
	c, _ := serve(t, nilCapsDriver{&fakeDriver{}})
	_, err := c.GetCapabilities(ctx)
	if se := statusOf(t, err); se.Status != 500 || !strings.Contains(se.Msg, "expecting 'local' or 'global'") {
		t.Errorf("got %v", err)
	}
}

// daemonCreateNetwork is a CreateNetwork body as dockerd encodes it: Go field
// names, no tags, IPAMData through its custom marshaller, trailing newline.
const daemonCreateNetwork = `{"NetworkID":"n1","Options":{"com.docker.network.enable_ipv4":true,"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"mtu":"1400","vxlan":"42"},"com.docker.network.internal":true},"IPv4Data":[{"AddressSpace":"LocalDefault","AuxAddresses":{"r":"172.18.0.5/16"},"Gateway":"172.18.0.1/16","Pool":"172.18.0.0/16"}],"IPv6Data":[]}` + "\n"

func TestCreateNetworkDaemonBody(t *testing.T) {
	d := &fakeDriver{}
	_, pc := serve(t, d)
	body, err := pc.CallRaw(ctx, "NetworkDriver.CreateNetwork", json.RawMessage(daemonCreateNetwork))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(body)) != "{}" {
		t.Errorf("answer %s, want {}", body)
	}
	req := d.called("CreateNetwork")[0].(*CreateNetworkRequest)
	want := &IPAMData{AddressSpace: "LocalDefault", Pool: "172.18.0.0/16", Gateway: "172.18.0.1/16", AuxAddresses: map[string]string{"r": "172.18.0.5/16"}}
	if req.NetworkID != "n1" || len(req.IPv4Data) != 1 || !reflect.DeepEqual(req.IPv4Data[0], want) || req.IPv6Data == nil || len(req.IPv6Data) != 0 {
		t.Errorf("req = %+v", req)
	}
	gen, err := GenericOptions(req.Options)
	if err != nil || !reflect.DeepEqual(gen, map[string]string{"mtu": "1400", "vxlan": "42"}) {
		t.Errorf("GenericOptions = %v, %v", gen, err)
	}
	for key, want := range map[string]bool{OptionEnableIPv4: true, OptionEnableIPv6: false, OptionInternal: true} {
		if v, ok, err := BoolOption(req.Options, key); v != want || !ok || err != nil {
			t.Errorf("BoolOption(%s) = %v %v %v", key, v, ok, err)
		}
	}
}

func TestCreateDeleteNetwork(t *testing.T) {
	d := &fakeDriver{}
	c, _ := serve(t, d)
	req := &CreateNetworkRequest{
		NetworkID: "n1",
		Options:   map[string]any{OptionGeneric: map[string]string{"a": "b"}},
		IPv4Data:  []*IPAMData{{AddressSpace: "s", Pool: "10.1.0.0/24", Gateway: "10.1.0.1/24"}},
		IPv6Data:  []*IPAMData{},
	}
	if err := c.CreateNetwork(ctx, req); err != nil {
		t.Fatal(err)
	}
	got := d.called("CreateNetwork")[0].(*CreateNetworkRequest)
	if g, _ := GenericOptions(got.Options); g["a"] != "b" || got.IPv4Data[0].Gateway != "10.1.0.1/24" {
		t.Errorf("driver got %+v", got)
	}
	if err := c.DeleteNetwork(ctx, &DeleteNetworkRequest{NetworkID: "n1"}); err != nil {
		t.Fatal(err)
	}
	if got := d.called("DeleteNetwork")[0].(*DeleteNetworkRequest); got.NetworkID != "n1" {
		t.Errorf("driver got %+v", got)
	}
}

func TestCreateEndpoint(t *testing.T) {
	// IPAM filled the address; the driver supplies the MAC, which was empty.
	d := &fakeDriver{epResp: &CreateEndpointResponse{Interface: &EndpointInterface{MacAddress: "02:42:ac:12:00:02"}}}
	c, _ := serve(t, d)
	mac := []byte{2, 0x42, 0xac, 0x12, 0, 9}
	req := &CreateEndpointRequest{
		NetworkID: "n1", EndpointID: "e1",
		Interface: &EndpointInterface{Address: "172.18.0.2/16"},
		Options:   map[string]any{OptionMacAddress: mac, OptionIfname: "data0", "user-opt": "x"},
	}
	resp, err := c.CreateEndpoint(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Interface == nil || resp.Interface.MacAddress != "02:42:ac:12:00:02" {
		t.Errorf("resp = %+v", resp.Interface)
	}
	got := d.called("CreateEndpoint")[0].(*CreateEndpointRequest)
	if *got.Interface != (EndpointInterface{Address: "172.18.0.2/16"}) {
		t.Errorf("driver got interface %+v", got.Interface)
	}
	// The MAC option crossed the wire as base64 and decodes back.
	if m, err := MacAddressOption(got.Options); err != nil || m.String() != "02:42:ac:12:00:09" {
		t.Errorf("MacAddressOption = %v, %v", m, err)
	}
	if s, _ := StringOption(got.Options, OptionIfname); s != "data0" {
		t.Errorf("ifname = %q", s)
	}
}

func TestCreateEndpointNilAnswers(t *testing.T) {
	for _, resp := range []*CreateEndpointResponse{nil, {}, {Interface: &EndpointInterface{}}} {
		d := &fakeDriver{epResp: resp}
		c, _ := serve(t, d)
		full := &EndpointInterface{Address: "10.0.0.2/24", AddressIPv6: "fd00::2/64", MacAddress: "02:00:00:00:00:01"}
		if _, err := c.CreateEndpoint(ctx, &CreateEndpointRequest{NetworkID: "n", EndpointID: "e", Interface: full}); err != nil {
			t.Errorf("answer %+v: %v", resp, err)
		}
	}
}

func TestCreateEndpointNilInterface(t *testing.T) {
	// The daemon always sends Interface; the Handler makes sure a driver
	// never sees nil, and the Client sends an empty one like the daemon.
	d := &fakeDriver{}
	c, pc := serve(t, d)
	if _, err := c.CreateEndpoint(ctx, &CreateEndpointRequest{NetworkID: "n", EndpointID: "e"}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.CallRaw(ctx, "NetworkDriver.CreateEndpoint", json.RawMessage(`{"NetworkID":"n","EndpointID":"e","Interface":null}`)); err != nil {
		t.Fatal(err)
	}
	for _, r := range d.called("CreateEndpoint") {
		if r.(*CreateEndpointRequest).Interface == nil {
			t.Error("driver got a nil Interface")
		}
	}
}

// G10: returning an Interface field the daemon already set fails, even with
// the same value. The Handler refuses it with a 500 and rolls back itself.
func TestCreateEndpointInterfaceRuleG10(t *testing.T) {
	for _, tc := range []struct {
		name     string
		req      EndpointInterface
		resp     EndpointInterface
		undoErr  error
		wantMsgs []string
	}{
		{
			name: "same address",
			req:  EndpointInterface{Address: "172.18.0.2/16"},
			resp: EndpointInterface{Address: "172.18.0.2/16"},
			wantMsgs: []string{"driver bug: ", "G10",
				"driver modified interface address: endpoint interface IP present (172.18.0.2/16). Cannot be modified with (172.18.0.2/16).",
				"rolled back with DeleteEndpoint"},
		},
		{
			name: "mac pre-filled by --mac-address",
			req:  EndpointInterface{Address: "172.18.0.2/16", MacAddress: "02:42:ac:12:00:02"},
			resp: EndpointInterface{MacAddress: "02:42:AC:12:00:03"},
			wantMsgs: []string{
				"driver modified interface MAC address: endpoint interface MAC address present (02:42:ac:12:00:02). Cannot be modified with 02:42:ac:12:00:03.",
				"rolled back with DeleteEndpoint"},
		},
		{
			name:     "rollback fails",
			req:      EndpointInterface{AddressIPv6: "fd00::2/64"},
			resp:     EndpointInterface{AddressIPv6: "fd00::3/64"},
			undoErr:  errors.New("veth busy"),
			wantMsgs: []string{"endpoint interface IP present (fd00::2/64). Cannot be modified with (fd00::3/64).", "rollback with DeleteEndpoint failed: veth busy"},
		},
		{
			name:     "unparsable answer",
			req:      EndpointInterface{},
			resp:     EndpointInterface{MacAddress: "not-a-mac"},
			wantMsgs: []string{"address not-a-mac: invalid MAC address", "rolled back"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.resp
			d := &fakeDriver{epResp: &CreateEndpointResponse{Interface: &resp}, undoErr: tc.undoErr}
			c, _ := serve(t, d)
			req := tc.req
			_, err := c.CreateEndpoint(ctx, &CreateEndpointRequest{NetworkID: "n1", EndpointID: "e1", Interface: &req})
			se := statusOf(t, err)
			if se.Status != 500 || se.Method != "NetworkDriver.CreateEndpoint" {
				t.Errorf("status %d method %s", se.Status, se.Method)
			}
			for _, m := range tc.wantMsgs {
				if !strings.Contains(se.Msg, m) {
					t.Errorf("message %q\nlacks %q", se.Msg, m)
				}
			}
			del := d.called("DeleteEndpoint")
			if len(del) != 1 || *del[0].(*DeleteEndpointRequest) != (DeleteEndpointRequest{NetworkID: "n1", EndpointID: "e1"}) {
				t.Errorf("rollback calls: %v", del)
			}
		})
	}
}

// G10 seen from the daemon side: a plugin that does not use our Handler
// breaks the rule; the Client fails and rolls back exactly as dockerd does.
func TestClientInterfaceRuleG10(t *testing.T) {
	set := `{"Interface":{"Address":"10.0.0.2/24","AddressIPv6":"","MacAddress":""}}`
	for _, tc := range []struct {
		name   string
		delete rawAnswer
		want   string
	}{
		{"rolled back", rawAnswer{body: `{}`},
			"driver modified interface address: endpoint interface IP present (10.0.0.2/24). Cannot be modified with (10.0.0.2/24).; rolled back"},
		// The daemon's wording puts the rollback error first.
		{"rollback fails on 200+Err", rawAnswer{body: `{"Err":"gone"}`},
			"remote: gone; failed to roll back: driver modified interface address: endpoint interface IP present (10.0.0.2/24). Cannot be modified with (10.0.0.2/24)."},
		{"rollback fails on 500", rawAnswer{status: 500, body: `{"Err":"gone"}`},
			"NetworkDriver.DeleteEndpoint: gone; failed to roll back: driver modified interface address: endpoint interface IP present (10.0.0.2/24). Cannot be modified with (10.0.0.2/24)."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{answers: map[string]rawAnswer{"NetworkDriver.CreateEndpoint": {body: set}, "NetworkDriver.DeleteEndpoint": tc.delete}}
			c := rawServe(t, rec)
			req := &CreateEndpointRequest{NetworkID: "n", EndpointID: "e", Interface: &EndpointInterface{Address: "10.0.0.2/24"}}
			resp, err := c.CreateEndpoint(ctx, req)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error\n%v\nwant\n%s", err, tc.want)
			}
			if resp == nil || resp.Interface.Address != "10.0.0.2/24" {
				t.Errorf("answer not returned with the error: %+v", resp)
			}
			paths, bodies := rec.seen()
			if !slices.Equal(paths, []string{"NetworkDriver.CreateEndpoint", "NetworkDriver.DeleteEndpoint"}) {
				t.Errorf("calls %v", paths)
			}
			if len(bodies) == 2 && string(bodies[1]) != `{"NetworkID":"n","EndpointID":"e"}`+"\n" {
				t.Errorf("DeleteEndpoint body %s", bodies[1])
			}
		})
	}
	// The MAC the user gave with --mac-address pre-fills the request.
	rec := &recorder{answers: map[string]rawAnswer{
		"NetworkDriver.CreateEndpoint": {body: `{"Interface":{"MacAddress":"02:00:00:00:00:01"}}`},
		"":                             {body: `{}`},
	}}
	c := rawServe(t, rec)
	_, err := c.CreateEndpoint(ctx, &CreateEndpointRequest{NetworkID: "n", EndpointID: "e",
		Interface: &EndpointInterface{Address: "10.0.0.2/24", MacAddress: "02:00:00:00:00:01"}})
	if err == nil || err.Error() != "driver modified interface MAC address: endpoint interface MAC address present (02:00:00:00:00:01). Cannot be modified with 02:00:00:00:00:01.; rolled back" {
		t.Errorf("error %v", err)
	}
	// The request is what the daemon sends: all three interface keys.
	_, bodies := rec.seen()
	if !strings.Contains(string(bodies[0]), `"Interface":{"Address":"10.0.0.2/24","AddressIPv6":"","MacAddress":"02:00:00:00:00:01"}`) {
		t.Errorf("request %s", bodies[0])
	}
}

func TestCheckInterfaceRule(t *testing.T) {
	for _, tc := range []struct {
		req, resp *EndpointInterface
		want      string
	}{
		{nil, nil, ""},
		{&EndpointInterface{Address: "10.0.0.2/24"}, nil, ""},
		{&EndpointInterface{Address: "10.0.0.2/24"}, &EndpointInterface{}, ""},
		{&EndpointInterface{}, &EndpointInterface{Address: "10.0.0.2/24", AddressIPv6: "fd00::2/64", MacAddress: "02:00:00:00:00:01"}, ""},
		{&EndpointInterface{Address: "10.0.0.2/24"}, &EndpointInterface{AddressIPv6: "fd00::2/64"}, ""},
		{&EndpointInterface{Address: "10.0.0.2/24"}, &EndpointInterface{Address: "10.0.0.2/24"},
			"driver modified interface address: endpoint interface IP present (10.0.0.2/24). Cannot be modified with (10.0.0.2/24)."},
		// Addresses go by family: an IPv4 CIDR in AddressIPv6 hits the IPv4 slot.
		{&EndpointInterface{Address: "10.0.0.2/24"}, &EndpointInterface{AddressIPv6: "10.0.0.3/24"},
			"driver modified interface address: endpoint interface IP present (10.0.0.2/24). Cannot be modified with (10.0.0.3/24)."},
		{&EndpointInterface{}, &EndpointInterface{Address: "10.0.0.2/24", AddressIPv6: "10.0.0.3/24"},
			"driver modified interface address: endpoint interface IP present (10.0.0.2/24). Cannot be modified with (10.0.0.3/24)."},
		{&EndpointInterface{MacAddress: "02:00:00:00:00:01"}, &EndpointInterface{MacAddress: "02:00:00:00:00:01"},
			"driver modified interface MAC address: endpoint interface MAC address present (02:00:00:00:00:01). Cannot be modified with 02:00:00:00:00:01."},
		{&EndpointInterface{}, &EndpointInterface{Address: "10.0.0.2"}, "invalid CIDR address: 10.0.0.2"},
		{&EndpointInterface{}, &EndpointInterface{AddressIPv6: "fd00::2"}, "invalid CIDR address: fd00::2"},
		{&EndpointInterface{}, &EndpointInterface{MacAddress: "zz"}, "address zz: invalid MAC address"},
	} {
		err := CheckInterfaceRule(tc.req, tc.resp)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("CheckInterfaceRule(%+v, %+v) = %q, want %q", tc.req, tc.resp, got, tc.want)
		}
	}
}

func TestEndpointOperInfo(t *testing.T) {
	d := &fakeDriver{operResp: &EndpointOperInfoResponse{Value: map[string]any{"veth": "veth12", "mtu": 1400}}}
	c, _ := serve(t, d)
	resp, err := c.EndpointOperInfo(ctx, &EndpointOperInfoRequest{NetworkID: "n", EndpointID: "e"})
	if err != nil {
		t.Fatal(err)
	}
	// G11: values come back as plain JSON (numbers are float64).
	if !reflect.DeepEqual(resp.Value, map[string]any{"veth": "veth12", "mtu": 1400.0}) {
		t.Errorf("Value = %#v", resp.Value)
	}
	d.set(func(d *fakeDriver) { d.operResp = nil })
	resp, err = c.EndpointOperInfo(ctx, &EndpointOperInfoRequest{NetworkID: "n", EndpointID: "e"})
	if err != nil || resp.Value != nil {
		t.Errorf("nil answer: %+v, %v", resp, err)
	}
}

func TestJoinLeave(t *testing.T) {
	d := &fakeDriver{joinResp: &JoinResponse{
		// G17: DstName is carried on the wire even though many daemons
		// ignore it; DstPrefix is what they honour.
		InterfaceName: &InterfaceName{SrcName: "veth0abc", DstPrefix: "eth", DstName: "data0"},
		Gateway:       "172.18.0.1",
		GatewayIPv6:   "fd00::1",
		StaticRoutes: []StaticRoute{
			{Destination: "10.9.0.0/16", RouteType: RouteNextHop, NextHop: "172.18.0.254"},
			{Destination: "10.8.0.0/16", RouteType: RouteConnected},
		},
		DisableGatewayService: true,
	}}
	c, pc := serve(t, d)
	portmap := []PortBinding{{Proto: TCP, Port: 80, HostPort: 8080}}
	req := &JoinRequest{NetworkID: "n", EndpointID: "e", SandboxKey: "/var/run/docker/netns/abc",
		Options: map[string]any{OptionPortMap: portmap}}
	resp, err := c.Join(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(resp, d.joinResp) {
		t.Errorf("resp = %+v", resp)
	}
	body, err := pc.CallRaw(ctx, "NetworkDriver.Join", req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"InterfaceName":{"SrcName":"veth0abc","DstPrefix":"eth","DstName":"data0"}`) {
		t.Errorf("G17: DstName not on the wire: %s", body)
	}
	got := d.called("Join")[0].(*JoinRequest)
	if pm, err := PortMapOption(got.Options); err != nil || !reflect.DeepEqual(pm, portmap) {
		t.Errorf("port map %+v %v", pm, err)
	}
	if err := c.Leave(ctx, &LeaveRequest{NetworkID: "n", EndpointID: "e"}); err != nil {
		t.Fatal(err)
	}
	if len(d.called("Leave")) != 1 {
		t.Error("Leave not called")
	}
}

func TestJoinBadAnswerRollsBack(t *testing.T) {
	for _, tc := range []struct {
		resp JoinResponse
		want string
	}{
		{JoinResponse{Gateway: "172.18.0.1/16"}, `unable to parse Gateway "172.18.0.1/16"`},
		{JoinResponse{GatewayIPv6: "fd00::1/64"}, `unable to parse GatewayIPv6 "fd00::1/64"`},
		{JoinResponse{StaticRoutes: []StaticRoute{{Destination: "10.0.0.0", RouteType: 1}}}, "invalid CIDR address: 10.0.0.0"},
		{JoinResponse{StaticRoutes: []StaticRoute{{Destination: "10.0.0.0/8", NextHop: "x"}}}, "failed to parse nexthop IP x"},
		{JoinResponse{StaticRoutes: []StaticRoute{{RouteType: 1}}}, "static route 0 has no Destination"},
		{JoinResponse{StaticRoutes: []StaticRoute{{Destination: "10.0.0.0/8"}}}, "has no NextHop"},
	} {
		resp := tc.resp
		d := &fakeDriver{joinResp: &resp}
		c, _ := serve(t, d)
		_, err := c.Join(ctx, &JoinRequest{NetworkID: "n", EndpointID: "e", SandboxKey: "/k"})
		se := statusOf(t, err)
		if se.Status != 500 || !strings.Contains(se.Msg, tc.want) || !strings.HasSuffix(se.Msg, "; rolled back with Leave") {
			t.Errorf("got %d %q, want 500 with %q", se.Status, se.Msg, tc.want)
		}
		if len(d.called("Leave")) != 1 {
			t.Errorf("%q: Leave not called to roll back", tc.want)
		}
		if err := CheckJoinResponse(&resp); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckJoinResponse = %v", err)
		}
	}
}

func TestClientJoinRollback(t *testing.T) {
	rec := &recorder{answers: map[string]rawAnswer{"NetworkDriver.Join": {body: `{"Gateway":"nope"}`}, "": {body: `{}`}}}
	c := rawServe(t, rec)
	resp, err := c.Join(ctx, &JoinRequest{NetworkID: "n", EndpointID: "e", SandboxKey: "/k"})
	if err == nil || err.Error() != `unable to parse Gateway "nope"; rolled back` || resp == nil || resp.Gateway != "nope" {
		t.Errorf("resp %+v err %v", resp, err)
	}
	if paths, _ := rec.seen(); !slices.Equal(paths, []string{"NetworkDriver.Join", "NetworkDriver.Leave"}) {
		t.Errorf("calls %v", paths)
	}
}

func TestOptionalMethods(t *testing.T) {
	d := &fakeDriver{
		allocResp: &AllocateNetworkResponse{Options: map[string]string{"vni": "4097"}},
		gwResp:    &GwAllocCheckResponse{SkipIPv4: true},
	}
	c, _ := serve(t, fullDriver{d})
	node := &DiscoveryNotification{DiscoveryType: NodeDiscovery, DiscoveryData: NodeDiscoveryData{Address: "10.0.0.5", BindAddress: "0.0.0.0", Self: true}}
	if err := c.DiscoverNew(ctx, node); err != nil {
		t.Fatal(err)
	}
	if err := c.DiscoverDelete(ctx, node); err != nil {
		t.Fatal(err)
	}
	got := d.called("DiscoverNew")[0].(*DiscoveryNotification)
	if nd, err := got.NodeData(); err != nil || *nd != (NodeDiscoveryData{Address: "10.0.0.5", BindAddress: "0.0.0.0", Self: true}) {
		t.Errorf("NodeData = %+v, %v", nd, err)
	}
	// The daemon drops key-distribution notifications; so does the Client.
	if err := c.DiscoverNew(ctx, &DiscoveryNotification{DiscoveryType: EncryptionKeysConfig}); err != nil {
		t.Fatal(err)
	}
	if n := len(d.called("DiscoverNew")); n != 1 {
		t.Errorf("DiscoverNew reached the driver %d times, want 1", n)
	}

	alloc, err := c.AllocateNetwork(ctx, &AllocateNetworkRequest{NetworkID: "n", Options: map[string]string{"a": "b"},
		IPv4Data: []*IPAMData{{Pool: "10.0.0.0/24", Gateway: "10.0.0.1/24"}}})
	if err != nil || !reflect.DeepEqual(alloc.Options, map[string]string{"vni": "4097"}) {
		t.Errorf("AllocateNetwork = %+v, %v", alloc, err)
	}
	if err := c.FreeNetwork(ctx, &FreeNetworkRequest{NetworkID: "n"}); err != nil {
		t.Fatal(err)
	}
	gw, err := c.GwAllocCheck(ctx, &GwAllocCheckRequest{Options: map[string]any{OptionGeneric: map[string]any{"x": "y"}}})
	if err != nil || *gw != (GwAllocCheckResponse{SkipIPv4: true}) {
		t.Errorf("GwAllocCheck = %+v, %v", gw, err)
	}
	if g, _ := GenericOptions(d.called("GwAllocCheck")[0].(*GwAllocCheckRequest).Options); g["x"] != "y" {
		t.Errorf("GwAllocCheck options %v", g)
	}
	if err := c.ProgramExternalConnectivity(ctx, &ProgramExternalConnectivityRequest{NetworkID: "n", EndpointID: "e",
		Options: map[string]any{OptionNoProxy6To4: true}}); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := BoolOption(d.called("ProgramExternalConnectivity")[0].(*ProgramExternalConnectivityRequest).Options, OptionNoProxy6To4); !v || !ok {
		t.Error("no_proxy_6to4 lost")
	}
	if err := c.RevokeExternalConnectivity(ctx, &RevokeExternalConnectivityRequest{NetworkID: "n", EndpointID: "e"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"DiscoverDelete", "AllocateNetwork", "FreeNetwork", "RevokeExternalConnectivity"} {
		if len(d.called(m)) != 1 {
			t.Errorf("%s not called once", m)
		}
	}
}

// A driver without the optional interfaces answers 404, which the daemon
// reads as "not implemented"; for Program/Revoke that is success.
func TestOptionalMethodsMissing(t *testing.T) {
	c, pc := serve(t, &fakeDriver{})
	if err := c.ProgramExternalConnectivity(ctx, &ProgramExternalConnectivityRequest{NetworkID: "n", EndpointID: "e"}); err != nil {
		t.Errorf("Program: %v", err)
	}
	if err := c.RevokeExternalConnectivity(ctx, &RevokeExternalConnectivityRequest{NetworkID: "n", EndpointID: "e"}); err != nil {
		t.Errorf("Revoke: %v", err)
	}
	// The raw answer really is a 404 with {"Err"}.
	_, err := pc.CallRaw(ctx, "NetworkDriver.ProgramExternalConnectivity", &ProgramExternalConnectivityRequest{NetworkID: "n", EndpointID: "e"})
	if !plugin.IsNotFound(err) {
		t.Errorf("raw Program: %v", err)
	}
	checks := map[string]error{}
	_, checks["AllocateNetwork"] = c.AllocateNetwork(ctx, &AllocateNetworkRequest{NetworkID: "n"})
	checks["FreeNetwork"] = c.FreeNetwork(ctx, &FreeNetworkRequest{NetworkID: "n"})
	_, checks["GwAllocCheck"] = c.GwAllocCheck(ctx, &GwAllocCheckRequest{})
	checks["DiscoverNew"] = c.DiscoverNew(ctx, &DiscoveryNotification{DiscoveryType: NodeDiscovery})
	checks["DiscoverDelete"] = c.DiscoverDelete(ctx, &DiscoveryNotification{DiscoveryType: NodeDiscovery})
	for m, err := range checks {
		if !plugin.IsNotFound(err) {
			t.Errorf("%s: want a 404, got %v", m, err)
		} else if se := statusOf(t, err); se.Method != "NetworkDriver."+m || !strings.Contains(err.Error(), "does not implement") {
			t.Errorf("%s: %v", m, err)
		}
	}
}

// G18: AllocateNetwork's Options replace the driver state; nil travels as
// null (the user's options are dropped), an echo keeps them.
func TestAllocateNetworkNilOptionsG18(t *testing.T) {
	d := &fakeDriver{allocResp: &AllocateNetworkResponse{}}
	c, pc := serve(t, fullDriver{d})
	req := &AllocateNetworkRequest{NetworkID: "n", Options: map[string]string{"user": "opt"}}
	body, err := pc.CallRaw(ctx, "NetworkDriver.AllocateNetwork", req)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(body)); got != `{"Options":null}` {
		t.Errorf("nil Options encoded as %s, want {\"Options\":null}", got)
	}
	resp, err := c.AllocateNetwork(ctx, req)
	if err != nil || resp.Options != nil {
		t.Errorf("resp %+v err %v", resp, err)
	}
	// A nil answer is {} on the wire: Options absent, also nil.
	d.set(func(d *fakeDriver) { d.allocResp = nil })
	if resp, err := c.AllocateNetwork(ctx, req); err != nil || resp.Options != nil {
		t.Errorf("nil answer: %+v %v", resp, err)
	}
	// The way to keep user options: echo them.
	d.set(func(d *fakeDriver) { d.allocResp = &AllocateNetworkResponse{Options: req.Options} })
	if resp, err := c.AllocateNetwork(ctx, req); err != nil || resp.Options["user"] != "opt" {
		t.Errorf("echo: %+v %v", resp, err)
	}
	// The daemon never sends IPv6Data here; null must be accepted.
	if _, err := pc.CallRaw(ctx, "NetworkDriver.AllocateNetwork", json.RawMessage(`{"NetworkID":"n","Options":null,"IPv4Data":[{"AddressSpace":"","Pool":"10.0.0.0/24","Gateway":"10.0.0.1/24"}],"IPv6Data":null}`)); err != nil {
		t.Error(err)
	}
}

func TestDriverErrors(t *testing.T) {
	for _, tc := range []struct {
		err        error
		wantStatus int
		wantMsg    string
	}{
		{errors.New("boom"), 500, "boom"},
		{plugin.NotFound("no network %s", "n1"), 404, "no network n1"},
		{plugin.Conflict("endpoint exists"), 409, "endpoint exists"},
		{plugin.BadRequest("bad vni"), 400, "bad vni"},
	} {
		d := &fakeDriver{err: tc.err}
		c, _ := serve(t, fullDriver{d})
		calls := map[string]error{}
		_, calls["GetCapabilities"] = c.GetCapabilities(ctx)
		calls["CreateNetwork"] = c.CreateNetwork(ctx, &CreateNetworkRequest{NetworkID: "n"})
		calls["DeleteNetwork"] = c.DeleteNetwork(ctx, &DeleteNetworkRequest{NetworkID: "n"})
		_, calls["CreateEndpoint"] = c.CreateEndpoint(ctx, &CreateEndpointRequest{NetworkID: "n", EndpointID: "e"})
		_, calls["EndpointOperInfo"] = c.EndpointOperInfo(ctx, &EndpointOperInfoRequest{NetworkID: "n", EndpointID: "e"})
		calls["DeleteEndpoint"] = c.DeleteEndpoint(ctx, &DeleteEndpointRequest{NetworkID: "n", EndpointID: "e"})
		_, calls["Join"] = c.Join(ctx, &JoinRequest{NetworkID: "n", EndpointID: "e", SandboxKey: "/k"})
		calls["Leave"] = c.Leave(ctx, &LeaveRequest{NetworkID: "n", EndpointID: "e"})
		calls["DiscoverNew"] = c.DiscoverNew(ctx, &DiscoveryNotification{DiscoveryType: 1})
		calls["DiscoverDelete"] = c.DiscoverDelete(ctx, &DiscoveryNotification{DiscoveryType: 1})
		_, calls["AllocateNetwork"] = c.AllocateNetwork(ctx, &AllocateNetworkRequest{NetworkID: "n"})
		calls["FreeNetwork"] = c.FreeNetwork(ctx, &FreeNetworkRequest{NetworkID: "n"})
		_, calls["GwAllocCheck"] = c.GwAllocCheck(ctx, &GwAllocCheckRequest{})
		calls["ProgramExternalConnectivity"] = c.ProgramExternalConnectivity(ctx, &ProgramExternalConnectivityRequest{NetworkID: "n", EndpointID: "e"})
		calls["RevokeExternalConnectivity"] = c.RevokeExternalConnectivity(ctx, &RevokeExternalConnectivityRequest{NetworkID: "n", EndpointID: "e"})
		if len(calls) != 15 {
			t.Fatalf("covered %d methods", len(calls))
		}
		for m, err := range calls {
			if tc.wantStatus == 404 && (m == "ProgramExternalConnectivity" || m == "RevokeExternalConnectivity") {
				// The daemon takes any 404 here for "not implemented".
				if err != nil {
					t.Errorf("%s: 404 must be success, got %v", m, err)
				}
				continue
			}
			se := statusOf(t, err)
			if se.Status != tc.wantStatus || se.Msg != tc.wantMsg || err.Error() != "NetworkDriver."+m+": "+tc.wantMsg {
				t.Errorf("%s: got %d %q (%v), want %d %q", m, se.Status, se.Msg, err, tc.wantStatus, tc.wantMsg)
			}
		}
	}
}

// clientCalls runs every Client method with valid requests.
func clientCalls(c *Client) map[string]error {
	calls := map[string]error{}
	_, calls["GetCapabilities"] = c.GetCapabilities(ctx)
	calls["CreateNetwork"] = c.CreateNetwork(ctx, &CreateNetworkRequest{NetworkID: "n"})
	calls["DeleteNetwork"] = c.DeleteNetwork(ctx, &DeleteNetworkRequest{NetworkID: "n"})
	_, calls["CreateEndpoint"] = c.CreateEndpoint(ctx, &CreateEndpointRequest{NetworkID: "n", EndpointID: "e"})
	_, calls["EndpointOperInfo"] = c.EndpointOperInfo(ctx, &EndpointOperInfoRequest{NetworkID: "n", EndpointID: "e"})
	calls["DeleteEndpoint"] = c.DeleteEndpoint(ctx, &DeleteEndpointRequest{NetworkID: "n", EndpointID: "e"})
	_, calls["Join"] = c.Join(ctx, &JoinRequest{NetworkID: "n", EndpointID: "e", SandboxKey: "/k"})
	calls["Leave"] = c.Leave(ctx, &LeaveRequest{NetworkID: "n", EndpointID: "e"})
	calls["DiscoverNew"] = c.DiscoverNew(ctx, &DiscoveryNotification{DiscoveryType: 1})
	calls["DiscoverDelete"] = c.DiscoverDelete(ctx, &DiscoveryNotification{DiscoveryType: 1})
	_, calls["AllocateNetwork"] = c.AllocateNetwork(ctx, &AllocateNetworkRequest{NetworkID: "n"})
	calls["FreeNetwork"] = c.FreeNetwork(ctx, &FreeNetworkRequest{NetworkID: "n"})
	_, calls["GwAllocCheck"] = c.GwAllocCheck(ctx, &GwAllocCheckRequest{})
	calls["ProgramExternalConnectivity"] = c.ProgramExternalConnectivity(ctx, &ProgramExternalConnectivityRequest{NetworkID: "n", EndpointID: "e"})
	calls["RevokeExternalConnectivity"] = c.RevokeExternalConnectivity(ctx, &RevokeExternalConnectivityRequest{NetworkID: "n", EndpointID: "e"})
	return calls
}

// The network driver's error field on a 200 is Err, surfaced as
// "remote: <Err>" (reference 2.2), for every method.
func TestClient200WithErr(t *testing.T) {
	c := rawServe(t, &recorder{answers: map[string]rawAnswer{"": {body: `{"Err":"pool exhausted","Scope":"local"}`}}})
	for m, err := range clientCalls(c) {
		if err == nil || err.Error() != "remote: pool exhausted" {
			t.Errorf("%s: got %v, want remote: pool exhausted", m, err)
		}
		var se *plugin.StatusError
		if errors.As(err, &se) {
			t.Errorf("%s: a 200 must not be a StatusError", m)
		}
	}
	// Case-insensitive like the daemon's decoder; empty Err is success.
	c = rawServe(t, &recorder{answers: map[string]rawAnswer{"": {body: `{"err":"lower","Scope":"local"}`}}})
	if err := c.CreateNetwork(ctx, &CreateNetworkRequest{NetworkID: "n"}); err == nil || err.Error() != "remote: lower" {
		t.Errorf("lower-case err: %v", err)
	}
	c = rawServe(t, &recorder{answers: map[string]rawAnswer{"": {body: `{"Err":"","Scope":"local"}`}}})
	for m, err := range clientCalls(c) {
		if err != nil {
			t.Errorf("%s with empty Err: %v", m, err)
		}
	}
}

// G19: an empty 200 body is an error for every method; non-200 bodies
// that are not {"Err"} JSON become the message verbatim.
func TestClientBadAnswers(t *testing.T) {
	c := rawServe(t, &recorder{})
	for m, err := range clientCalls(c) {
		if err == nil || !strings.Contains(err.Error(), "empty response body") {
			t.Errorf("%s: empty 200 body gave %v", m, err)
		}
	}
	c = rawServe(t, &recorder{answers: map[string]rawAnswer{"": {status: http.StatusBadGateway, body: "upstream down\n"}}})
	for m, err := range clientCalls(c) {
		se := statusOf(t, err)
		if se.Status != 502 || err.Error() != "NetworkDriver."+m+": upstream down\n" {
			t.Errorf("%s: %v", m, err)
		}
	}
	c = rawServe(t, &recorder{answers: map[string]rawAnswer{"": {body: `{"Scope": 7}`}}})
	if _, err := c.GetCapabilities(ctx); err == nil || !strings.Contains(err.Error(), "decode response") {
		t.Errorf("bad JSON answer: %v", err)
	}
	// The Client checks Scope like the daemon's registration.
	c = rawServe(t, &recorder{answers: map[string]rawAnswer{"": {body: `{"Scope":"cluster"}`}}})
	if caps, err := c.GetCapabilities(ctx); err == nil || err.Error() != "invalid capability: expecting 'local' or 'global', got cluster" || caps.Scope != "cluster" {
		t.Errorf("bad scope: %+v %v", caps, err)
	}
}

// requestMethods are the methods whose request has required fields, with a
// body that is valid JSON but lacks them.
var requestMethods = []string{
	"CreateNetwork", "DeleteNetwork", "CreateEndpoint", "EndpointOperInfo", "DeleteEndpoint", "Join", "Leave",
	"AllocateNetwork", "FreeNetwork", "ProgramExternalConnectivity", "RevokeExternalConnectivity",
}

func TestEmptyAndBadBodies(t *testing.T) {
	d := &fakeDriver{}
	_, pc := serve(t, fullDriver{d})
	for _, m := range requestMethods {
		for _, body := range []any{nil, json.RawMessage(`{}`)} {
			_, err := pc.CallRaw(ctx, "NetworkDriver."+m, body)
			se := statusOf(t, err)
			if se.Status != 400 || se.Msg != "request has no NetworkID" {
				t.Errorf("%s body %s: %d %q", m, body, se.Status, se.Msg)
			}
		}
	}
	// The daemon sends GetCapabilities no body (G19), and every other
	// method a JSON object: an empty body there is a retry that lost it
	// (plugin.WithDrainedRetry), refused even where {} is a valid request.
	if _, err := pc.CallRaw(ctx, "NetworkDriver.GetCapabilities", nil); err != nil {
		t.Errorf("GetCapabilities with empty body: %v", err)
	}
	for _, m := range []string{"GwAllocCheck", "DiscoverNew", "DiscoverDelete"} {
		_, err := pc.CallRaw(ctx, "NetworkDriver."+m, nil)
		if se := statusOf(t, err); se.Status != 400 || se.Msg != "request has no body" {
			t.Errorf("%s with empty body: %d %q", m, se.Status, se.Msg)
		}
		if _, err := pc.CallRaw(ctx, "NetworkDriver."+m, json.RawMessage(`{}`)); err != nil {
			t.Errorf("%s with {}: %v", m, err)
		}
	}
	if n := d.ncalls(); n != 4 {
		t.Errorf("the driver was called %d times, want 4 (GetCapabilities and the {} calls)", n)
	}
	// Bad JSON: malformed, trailing garbage, wrong types.
	bad := []string{`{"NetworkID":`, `{"NetworkID":"n"} x`, `[]`, `"s"`, `{"NetworkID":7}`}
	typed := map[string]string{"GwAllocCheck": `{"Options":[1]}`, "DiscoverNew": `{"DiscoveryType":"1"}`, "DiscoverDelete": `{"DiscoveryType":1.5}`}
	for _, m := range append(slices.Clone(requestMethods), "GwAllocCheck", "DiscoverNew", "DiscoverDelete") {
		bodies := slices.Clone(bad[:4])
		if b, ok := typed[m]; ok {
			bodies = append(bodies, b)
		} else {
			bodies = append(bodies, bad[4])
		}
		for _, b := range bodies {
			status, resp := rawPost(t, pc, "NetworkDriver."+m, []byte(b))
			var e struct{ Err string }
			if status != 400 || json.Unmarshal([]byte(resp), &e) != nil || !strings.HasPrefix(e.Err, "decode request: ") {
				t.Errorf("%s with %s: %d %s", m, b, status, resp)
			}
		}
	}
	if n := d.ncalls(); n != 4 {
		t.Errorf("bad bodies reached the driver (%d calls)", n)
	}
}

func TestRequestValidation(t *testing.T) {
	d := &fakeDriver{}
	c, _ := serve(t, fullDriver{d})
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"no endpoint", c.DeleteEndpoint(ctx, &DeleteEndpointRequest{NetworkID: "n"}), "request has no EndpointID"},
		{"no sandbox", func() error {
			_, err := c.Join(ctx, &JoinRequest{NetworkID: "n", EndpointID: "e"})
			return err
		}(), "request has no SandboxKey"},
		{"bad interface", func() error {
			_, err := c.CreateEndpoint(ctx, &CreateEndpointRequest{NetworkID: "n", EndpointID: "e", Interface: &EndpointInterface{Address: "10.0.0.2"}})
			return err
		}(), "Interface.Address: invalid CIDR address: 10.0.0.2"},
		{"bad mac", func() error {
			_, err := c.CreateEndpoint(ctx, &CreateEndpointRequest{NetworkID: "n", EndpointID: "e", Interface: &EndpointInterface{MacAddress: "02:00"}})
			return err
		}(), "Interface.MacAddress: address 02:00: invalid MAC address"},
		{"bare gateway", c.CreateNetwork(ctx, &CreateNetworkRequest{NetworkID: "n", IPv4Data: []*IPAMData{{Pool: "10.0.0.0/24", Gateway: "10.0.0.1"}}}),
			"IPv4Data[0].Gateway (want ip/len): invalid CIDR address: 10.0.0.1"},
		{"null pool", c.CreateNetwork(ctx, &CreateNetworkRequest{NetworkID: "n", IPv6Data: []*IPAMData{nil}}), "IPv6Data[0] is null"},
		{"no pool", c.CreateNetwork(ctx, &CreateNetworkRequest{NetworkID: "n", IPv4Data: []*IPAMData{{}}}), "IPv4Data[0].Pool: invalid CIDR address: "},
		{"bad aux", func() error {
			_, err := c.AllocateNetwork(ctx, &AllocateNetworkRequest{NetworkID: "n", IPv4Data: []*IPAMData{{Pool: "10.0.0.0/24", AuxAddresses: map[string]string{"x": "10.0.0.9"}}}})
			return err
		}(), `IPv4Data[0].AuxAddresses["x"]: invalid CIDR address: 10.0.0.9`},
	} {
		se := statusOf(t, tc.err)
		if se.Status != 400 || se.Msg != tc.want {
			t.Errorf("%s: %d %q, want 400 %q", tc.name, se.Status, se.Msg, tc.want)
		}
	}
	if n := d.ncalls(); n != 0 {
		t.Errorf("invalid requests reached the driver %d times", n)
	}
}

func TestPanickingDriver(t *testing.T) {
	d := &fakeDriver{panicOn: "Join"}
	c, _ := serve(t, d)
	_, err := c.Join(ctx, &JoinRequest{NetworkID: "n", EndpointID: "e", SandboxKey: "/k"})
	se := statusOf(t, err)
	if se.Status != 500 || !strings.Contains(se.Msg, "fake driver panics in Join") {
		t.Errorf("panic answered %d %q", se.Status, se.Msg)
	}
	// The server keeps serving, on new and reused connections.
	for range 3 {
		if err := c.Leave(ctx, &LeaveRequest{NetworkID: "n", EndpointID: "e"}); err != nil {
			t.Fatalf("after panic: %v", err)
		}
	}
}

// The wire keys, exactly as the reference's tables and the daemon's Go
// field names.
func TestWireKeys(t *testing.T) {
	for _, tc := range []struct {
		v    any
		keys string
	}{
		{Capabilities{}, "ConnectivityScope GwAllocChecker Scope"},
		{IPAMData{Gateway: "g", AuxAddresses: map[string]string{"a": "b"}}, "AddressSpace AuxAddresses Gateway Pool"},
		{IPAMData{}, "AddressSpace Pool"},
		{CreateNetworkRequest{}, "IPv4Data IPv6Data NetworkID Options"},
		{DeleteNetworkRequest{}, "NetworkID"},
		{EndpointInterface{}, "Address AddressIPv6 MacAddress"},
		{CreateEndpointRequest{}, "EndpointID Interface NetworkID Options"},
		{CreateEndpointResponse{}, "Interface"},
		{EndpointOperInfoRequest{}, "EndpointID NetworkID"},
		{EndpointOperInfoResponse{}, "Value"},
		{DeleteEndpointRequest{}, "EndpointID NetworkID"},
		{JoinRequest{}, "EndpointID NetworkID Options SandboxKey"},
		{JoinResponse{}, "DisableGatewayService Gateway GatewayIPv6 InterfaceName StaticRoutes"},
		{InterfaceName{DstName: "x"}, "DstName DstPrefix SrcName"},
		{StaticRoute{}, "Destination NextHop RouteType"},
		{LeaveRequest{}, "EndpointID NetworkID"},
		{DiscoveryNotification{}, "DiscoveryData DiscoveryType"},
		{NodeDiscoveryData{}, "Address BindAddress Self"},
		{AllocateNetworkRequest{}, "IPv4Data IPv6Data NetworkID Options"},
		{AllocateNetworkResponse{}, "Options"},
		{FreeNetworkRequest{}, "NetworkID"},
		{GwAllocCheckRequest{}, "Options"},
		{GwAllocCheckResponse{}, "SkipIPv4 SkipIPv6"},
		{ProgramExternalConnectivityRequest{}, "EndpointID NetworkID Options"},
		{RevokeExternalConnectivityRequest{}, "EndpointID NetworkID"},
		{PortBinding{}, "HostIP HostPort HostPortEnd IP Port Proto"},
		{TransportPort{}, "Port Proto"},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if got := strings.Join(keys, " "); got != tc.keys {
			t.Errorf("%T keys %q, want %q", tc.v, got, tc.keys)
		}
	}
}
