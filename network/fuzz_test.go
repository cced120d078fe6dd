package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/dockplug/dockplug/plugin"
)

// Server side: every request decoder, through the Handler's Methods with
// fuzzed bodies. Nothing may panic; a refused body is a *plugin.Error 400
// with a message; an accepted one reaches the driver clean (fuzzDriver
// panics otherwise) and its answer encodes. The driver also runs the option
// helpers over the fuzzed Options.
//
// Run one with: go test -run '^$' -fuzz '^FuzzHandlerJoin$' -fuzztime 10s ./network/

func FuzzHandlerCreateNetwork(f *testing.F) {
	fuzzHandler(f, "CreateNetwork", daemonCreateNetwork,
		`{"NetworkID":"n","Options":{"com.docker.network.generic":{"a":1}},"IPv4Data":[null],"IPv6Data":[{"Pool":"fd00::/64"}]}`)
}

func FuzzHandlerDeleteNetwork(f *testing.F) {
	fuzzHandler(f, "DeleteNetwork", `{"NetworkID":"n1"}`)
}

func FuzzHandlerCreateEndpoint(f *testing.F) {
	fuzzHandler(f, "CreateEndpoint",
		`{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"172.18.0.2/16","AddressIPv6":"","MacAddress":""},"Options":{"com.docker.network.endpoint.macaddress":"AkKsEQAC","com.docker.network.portmap":[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080}],"com.docker.network.endpoint.exposedports":[{"Proto":6,"Port":80}],"com.docker.network.endpoint.ifname":"eth7"}}`,
		`{"NetworkID":"n","EndpointID":"e","Interface":null,"Options":null}`)
}

func FuzzHandlerEndpointOperInfo(f *testing.F) {
	fuzzHandler(f, "EndpointOperInfo", `{"NetworkID":"n","EndpointID":"e"}`)
}

func FuzzHandlerDeleteEndpoint(f *testing.F) {
	fuzzHandler(f, "DeleteEndpoint", `{"NetworkID":"n","EndpointID":"e"}`)
}

func FuzzHandlerJoin(f *testing.F) {
	fuzzHandler(f, "Join",
		`{"NetworkID":"n","EndpointID":"e","SandboxKey":"/var/run/docker/netns/abc","Options":{"com.docker.network.portmap":[],"com.docker.network.endpoint.exposedports":[]}}`)
}

func FuzzHandlerLeave(f *testing.F) {
	fuzzHandler(f, "Leave", `{"NetworkID":"n","EndpointID":"e"}`)
}

func FuzzHandlerDiscover(f *testing.F) {
	fuzzHandler(f, "DiscoverNew",
		`{"DiscoveryType":1,"DiscoveryData":{"Address":"10.0.0.5","BindAddress":"0.0.0.0","Self":true}}`,
		`{"DiscoveryType":2,"DiscoveryData":{"Keys":["AAE="],"Tags":[1]}}`)
}

func FuzzHandlerAllocateNetwork(f *testing.F) {
	fuzzHandler(f, "AllocateNetwork",
		`{"NetworkID":"n","Options":{"a":"b"},"IPv4Data":[{"AddressSpace":"","Pool":"10.0.0.0/24","Gateway":"10.0.0.1/24"}],"IPv6Data":null}`)
}

func FuzzHandlerFreeNetwork(f *testing.F) {
	fuzzHandler(f, "FreeNetwork", `{"NetworkID":"n"}`)
}

func FuzzHandlerGwAllocCheck(f *testing.F) {
	fuzzHandler(f, "GwAllocCheck", `{"Options":{"com.docker.network.generic":{"x":"y"},"com.docker.network.enable_ipv4":true}}`)
}

func FuzzHandlerProgramExternalConnectivity(f *testing.F) {
	fuzzHandler(f, "ProgramExternalConnectivity",
		`{"NetworkID":"n","EndpointID":"e","Options":{"com.docker.network.driver.private.no_proxy_6to4":true}}`)
}

func FuzzHandlerRevokeExternalConnectivity(f *testing.F) {
	fuzzHandler(f, "RevokeExternalConnectivity", `{"NetworkID":"n","EndpointID":"e"}`)
}

func fuzzHandler(f *testing.F, method string, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
		f.Add([]byte(s + "\n")) // the daemon's json.Encoder adds a newline
	}
	f.Add([]byte{})
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	fn := NewHandler(fuzzDriver{}).Methods()["NetworkDriver."+method]
	if fn == nil {
		f.Fatalf("no method %s", method)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := fn(context.Background(), body)
		if err != nil {
			var pe *plugin.Error
			if !errors.As(err, &pe) || pe.Status != 400 || plugin.StatusOf(err) != 400 || err.Error() == "" {
				t.Fatalf("body %q: want a 400 *plugin.Error, got %T %v", body, err, err)
			}
			return
		}
		if _, err := json.Marshal(resp); err != nil {
			t.Fatalf("body %q: answer does not encode: %v", body, err)
		}
	})
}

// fuzzDriver asserts the Handler's promises (panicking if one is broken)
// and runs the option helpers, which must not panic either.
type fuzzDriver struct{}

func must(cond bool, format string, args ...any) {
	if !cond {
		panic(fmt.Sprintf(format, args...))
	}
}

func mustIDs(nid, eid string) {
	must(nid != "", "empty NetworkID reached the driver")
	must(eid != "", "empty EndpointID reached the driver")
}

func mustPools(pools ...[]*IPAMData) {
	for _, list := range pools {
		for _, d := range list {
			must(d != nil, "null pool reached the driver")
			_, _, err := net.ParseCIDR(d.Pool)
			must(err == nil, "bad pool %q reached the driver", d.Pool)
		}
	}
}

func useOptions(opts map[string]any) {
	GenericOptions(opts)
	BoolOption(opts, OptionEnableIPv6)
	StringOption(opts, OptionIfname)
	MacAddressOption(opts)
	PortMapOption(opts)
	ExposedPortsOption(opts)
}

func (fuzzDriver) GetCapabilities(context.Context) (*Capabilities, error) {
	return &Capabilities{Scope: ScopeLocal}, nil
}

func (fuzzDriver) CreateNetwork(_ context.Context, r *CreateNetworkRequest) error {
	must(r.NetworkID != "", "empty NetworkID reached the driver")
	mustPools(r.IPv4Data, r.IPv6Data)
	useOptions(r.Options)
	return nil
}

func (fuzzDriver) DeleteNetwork(_ context.Context, r *DeleteNetworkRequest) error {
	must(r.NetworkID != "", "empty NetworkID reached the driver")
	return nil
}

func (fuzzDriver) CreateEndpoint(_ context.Context, r *CreateEndpointRequest) (*CreateEndpointResponse, error) {
	mustIDs(r.NetworkID, r.EndpointID)
	must(r.Interface != nil, "nil Interface reached the driver")
	must(validateInterface(r.Interface) == nil, "bad interface reached the driver")
	useOptions(r.Options)
	// Fill in what is empty: always allowed (G10).
	resp := &EndpointInterface{}
	if r.Interface.MacAddress == "" {
		resp.MacAddress = "02:00:00:00:00:01"
	}
	return &CreateEndpointResponse{Interface: resp}, nil
}

func (fuzzDriver) EndpointOperInfo(_ context.Context, r *EndpointOperInfoRequest) (*EndpointOperInfoResponse, error) {
	mustIDs(r.NetworkID, r.EndpointID)
	return &EndpointOperInfoResponse{Value: map[string]any{"id": r.EndpointID}}, nil
}

func (fuzzDriver) DeleteEndpoint(_ context.Context, r *DeleteEndpointRequest) error {
	mustIDs(r.NetworkID, r.EndpointID)
	return nil
}

func (fuzzDriver) Join(_ context.Context, r *JoinRequest) (*JoinResponse, error) {
	mustIDs(r.NetworkID, r.EndpointID)
	must(r.SandboxKey != "", "empty SandboxKey reached the driver")
	useOptions(r.Options)
	return &JoinResponse{InterfaceName: &InterfaceName{SrcName: "veth0", DstPrefix: "eth"}, Gateway: "10.0.0.1"}, nil
}

func (fuzzDriver) Leave(_ context.Context, r *LeaveRequest) error {
	mustIDs(r.NetworkID, r.EndpointID)
	return nil
}

func (fuzzDriver) DiscoverNew(_ context.Context, r *DiscoveryNotification) error {
	r.NodeData()
	return nil
}

func (fuzzDriver) DiscoverDelete(_ context.Context, r *DiscoveryNotification) error {
	r.NodeData()
	return nil
}

func (fuzzDriver) AllocateNetwork(_ context.Context, r *AllocateNetworkRequest) (*AllocateNetworkResponse, error) {
	must(r.NetworkID != "", "empty NetworkID reached the driver")
	mustPools(r.IPv4Data, r.IPv6Data)
	return &AllocateNetworkResponse{Options: r.Options}, nil // echo (G18)
}

func (fuzzDriver) FreeNetwork(_ context.Context, r *FreeNetworkRequest) error {
	must(r.NetworkID != "", "empty NetworkID reached the driver")
	return nil
}

func (fuzzDriver) GwAllocCheck(_ context.Context, r *GwAllocCheckRequest) (*GwAllocCheckResponse, error) {
	useOptions(r.Options)
	return &GwAllocCheckResponse{}, nil
}

func (fuzzDriver) ProgramExternalConnectivity(_ context.Context, r *ProgramExternalConnectivityRequest) error {
	mustIDs(r.NetworkID, r.EndpointID)
	useOptions(r.Options)
	return nil
}

func (fuzzDriver) RevokeExternalConnectivity(_ context.Context, r *RevokeExternalConnectivityRequest) error {
	mustIDs(r.NetworkID, r.EndpointID)
	return nil
}

// Client side: every response decoder, on fuzzed 200 bodies, through the
// same decodeReply the Client uses, plus the answer checks the Client
// applies. Nothing may panic; a decoded non-empty Err is "remote: <Err>".

func FuzzClientCapabilities(f *testing.F) {
	fuzzClient(f, "GetCapabilities", func() reply { return &capabilitiesReply{} }, func(r reply) {
		CheckCapabilities(&r.(*capabilitiesReply).Capabilities)
		r.(*capabilitiesReply).EffectiveConnectivityScope()
	}, `{"Scope":"local","ConnectivityScope":"","GwAllocChecker":false}`, `{"Scope":"overlay"}`)
}

func FuzzClientCreateEndpoint(f *testing.F) {
	full := &EndpointInterface{Address: "10.0.0.2/24", AddressIPv6: "fd00::2/64", MacAddress: "02:00:00:00:00:01"}
	fuzzClient(f, "CreateEndpoint", func() reply { return &createEndpointReply{} }, func(r reply) {
		resp := r.(*createEndpointReply).Interface
		CheckInterfaceRule(&EndpointInterface{}, resp)
		CheckInterfaceRule(full, resp)
		CheckInterfaceRule(nil, resp)
	}, `{"Interface":{"Address":"","AddressIPv6":"","MacAddress":"02:42:ac:11:00:02"}}`, `{"Interface":null}`,
		`{"Interface":{"Address":"10.0.0.3/24","AddressIPv6":"10.0.0.4/24"}}`)
}

func FuzzClientEndpointOperInfo(f *testing.F) {
	fuzzClient(f, "EndpointOperInfo", func() reply { return &endpointOperInfoReply{} }, nil,
		`{"Value":{"com.docker.network.portmap":[{"Proto":6,"Port":80}],"mac":"02:00:00:00:00:01"}}`)
}

func FuzzClientJoin(f *testing.F) {
	fuzzClient(f, "Join", func() reply { return &joinReply{} }, func(r reply) {
		CheckJoinResponse(&r.(*joinReply).JoinResponse)
	}, `{"InterfaceName":{"SrcName":"veth0","DstPrefix":"eth","DstName":"data0"},"Gateway":"172.18.0.1","GatewayIPv6":"","StaticRoutes":[{"Destination":"10.0.0.0/8","RouteType":0,"NextHop":"172.18.0.254"}],"DisableGatewayService":false}`,
		`{"StaticRoutes":[{"RouteType":1}],"Gateway":"x"}`)
}

func FuzzClientAllocateNetwork(f *testing.F) {
	fuzzClient(f, "AllocateNetwork", func() reply { return &allocateNetworkReply{} }, nil,
		`{"Options":{"com.docker.network.driver.overlay.vxlanid_list":"4097"}}`, `{"Options":null}`)
}

func FuzzClientGwAllocCheck(f *testing.F) {
	fuzzClient(f, "GwAllocCheck", func() reply { return &gwAllocCheckReply{} }, nil, `{"SkipIPv4":true,"SkipIPv6":false}`)
}

func FuzzClientEmptyReply(f *testing.F) {
	fuzzClient(f, "CreateNetwork", func() reply { return &errReply{} }, nil, `{"Err":"pool overlaps"}`, `{"Err":""}`, `{"Err":7}`)
}

func fuzzClient(f *testing.F, method string, newReply func() reply, check func(reply), seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Add([]byte{})
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"Err":"boom"}`))
	method = "NetworkDriver." + method
	f.Fuzz(func(t *testing.T, body []byte) {
		r := newReply()
		err := decodeReply(method, body, r)
		if err != nil && strings.HasPrefix(err.Error(), "remote: ") {
			if want := "remote: " + r.remoteErr(); err.Error() != want {
				t.Fatalf("body %q: error %q, want %q", body, err, want)
			}
		}
		if err == nil && r.remoteErr() != "" {
			t.Fatalf("body %q: Err %q ignored", body, r.remoteErr())
		}
		if err == nil && check != nil {
			check(r)
		}
	})
}
