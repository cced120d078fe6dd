package ipam_test

import (
	"context"
	"fmt"
	"os"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

// oneNet hands out a single pool and its .2 address.
type oneNet struct{}

func (oneNet) GetCapabilities(context.Context) (*ipam.CapabilitiesResponse, error) {
	return &ipam.CapabilitiesResponse{}, nil
}

func (oneNet) GetDefaultAddressSpaces(context.Context) (*ipam.AddressSpacesResponse, error) {
	return &ipam.AddressSpacesResponse{LocalDefaultAddressSpace: "local", GlobalDefaultAddressSpace: "global"}, nil
}

func (oneNet) RequestPool(_ context.Context, req *ipam.RequestPoolRequest) (*ipam.RequestPoolResponse, error) {
	if req.V6 {
		return nil, plugin.BadRequest("no IPv6 here")
	}
	return &ipam.RequestPoolResponse{PoolID: "net1", Pool: "10.42.0.0/24",
		Data: map[string]string{ipam.Gateway: "10.42.0.1/24"}}, nil
}

func (oneNet) ReleasePool(context.Context, *ipam.ReleasePoolRequest) error { return nil }

func (oneNet) RequestAddress(_ context.Context, req *ipam.RequestAddressRequest) (*ipam.RequestAddressResponse, error) {
	return &ipam.RequestAddressResponse{Address: "10.42.0.2/24"}, nil
}

func (oneNet) ReleaseAddress(context.Context, *ipam.ReleaseAddressRequest) error { return nil }

func ExampleClient() {
	r := plugintest.Must(plugintest.Start("onenet", ipam.NewHandler(oneNet{})))
	defer os.RemoveAll(r.SocketDir)
	defer r.Stop()
	c := ipam.NewClient(r.Client)
	ctx := context.Background()

	pool, err := c.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: "local"})
	fmt.Println(pool.PoolID, pool.Pool, pool.Data[ipam.Gateway], err)
	addr, err := c.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: pool.PoolID,
		Options: map[string]string{ipam.OptEndpointName: "web"}})
	fmt.Println(addr.Address, err)
	_, err = c.RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: "local", V6: true})
	fmt.Println(err)
	// Output:
	// net1 10.42.0.0/24 10.42.0.1/24 <nil>
	// 10.42.0.2/24 <nil>
	// IpamDriver.RequestPool: no IPv6 here
}
