package network_test

import (
	"context"
	"fmt"
	"os"

	"github.com/dockplug/dockplug/network"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

// vethDriver is a trivial driver: it hands out one link name per endpoint
// (a real one would create the veth pair before answering Join).
type vethDriver struct{}

func (vethDriver) GetCapabilities(context.Context) (*network.Capabilities, error) {
	return &network.Capabilities{Scope: network.ScopeLocal}, nil
}

func (vethDriver) CreateNetwork(_ context.Context, req *network.CreateNetworkRequest) error {
	opts, err := network.GenericOptions(req.Options)
	if err != nil {
		return err
	}
	fmt.Println("create network", req.NetworkID, "pool", req.IPv4Data[0].Pool, "mtu", opts["mtu"])
	return nil
}

func (vethDriver) DeleteNetwork(context.Context, *network.DeleteNetworkRequest) error { return nil }

func (vethDriver) CreateEndpoint(context.Context, *network.CreateEndpointRequest) (*network.CreateEndpointResponse, error) {
	return nil, nil // keep the address and MAC the daemon chose (G10)
}

func (vethDriver) EndpointOperInfo(context.Context, *network.EndpointOperInfoRequest) (*network.EndpointOperInfoResponse, error) {
	return nil, nil
}

func (vethDriver) DeleteEndpoint(context.Context, *network.DeleteEndpointRequest) error { return nil }

func (vethDriver) Join(_ context.Context, req *network.JoinRequest) (*network.JoinResponse, error) {
	return &network.JoinResponse{
		InterfaceName: &network.InterfaceName{SrcName: "veth" + req.EndpointID[:4], DstPrefix: "eth"},
		Gateway:       "10.10.0.1",
	}, nil
}

func (vethDriver) Leave(context.Context, *network.LeaveRequest) error { return nil }

func Example() {
	r := plugintest.Must(plugintest.Start("example-net", network.NewHandler(vethDriver{})))
	defer os.RemoveAll(r.SocketDir) // Start's temp dir outlives Stop
	defer r.Stop()
	c := network.NewClient(r.Client)
	ctx := context.Background()

	caps, err := c.GetCapabilities(ctx)
	fmt.Println("scope", caps.Scope, err)

	err = c.CreateNetwork(ctx, &network.CreateNetworkRequest{
		NetworkID: "n1",
		Options:   map[string]any{network.OptionGeneric: map[string]string{"mtu": "1450"}},
		IPv4Data:  []*network.IPAMData{{AddressSpace: "LocalDefault", Pool: "10.10.0.0/24", Gateway: "10.10.0.1/24"}},
	})
	fmt.Println("created", err)

	join, err := c.Join(ctx, &network.JoinRequest{NetworkID: "n1", EndpointID: "e1f2a3", SandboxKey: "/var/run/docker/netns/x"})
	fmt.Println("join", join.InterfaceName.SrcName, join.InterfaceName.DstPrefix, join.Gateway, err)

	// Optional methods the driver lacks answer 404: "not implemented".
	_, err = c.AllocateNetwork(ctx, &network.AllocateNetworkRequest{NetworkID: "n1"})
	fmt.Println("allocate not implemented:", plugin.IsNotFound(err))
	fmt.Println("program:", c.ProgramExternalConnectivity(ctx, &network.ProgramExternalConnectivityRequest{NetworkID: "n1", EndpointID: "e1f2a3"}))

	// Output:
	// scope local <nil>
	// create network n1 pool 10.10.0.0/24 mtu 1450
	// created <nil>
	// join vethe1f2 eth 10.10.0.1 <nil>
	// allocate not implemented: true
	// program: <nil>
}
