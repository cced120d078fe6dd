package driver

import (
	"context"

	"github.com/dockplug/dockplug/plugin"
)

// AdminKind is what Plugin.Activate lists on the admin socket, which serves
// Admin: `dockplug ipam` asks the running plugin there, because bbolt admits
// one process per state file. The admin methods are not part of the
// protocol the daemon speaks: serve them on a socket of their own, never
// next to IpamDriver on the socket the daemon uses.
const AdminKind = "dockplug.ipam-admin"

// Admin method names.
const (
	MethodPools = "DockplugIpam.Pools"
	MethodPool  = "DockplugIpam.Pool"
	MethodGC    = "DockplugIpam.GC"
)

// GCRequest asks MethodGC to free what is provably unused (Apply) or only
// to say what it would free.
type GCRequest struct {
	Apply bool `json:"apply"`
}

// GCResponse answers MethodGC: the blocks of hosts without a lease, freed
// or kept, with the reason.
type GCResponse struct {
	Applied bool      `json:"applied"`
	Blocks  []GCBlock `json:"blocks"`
}

// PoolsResponse answers MethodPools.
type PoolsResponse struct {
	HostID string     `json:"hostID"`
	Pools  []PoolInfo `json:"pools"`
}

// PoolQuery names a pool by ID or CIDR.
type PoolQuery struct {
	Pool string `json:"pool"`
}

// PoolResponse answers MethodPool.
type PoolResponse struct {
	Pool      PoolInfo   `json:"pool"`
	Addresses []AddrInfo `json:"addresses"`
}

type admin struct{ d *Driver }

// Admin returns the Kind serving the admin methods, for the admin socket.
func (d *Driver) Admin() plugin.Kind { return admin{d} }

func (a admin) Implements() string { return AdminKind }

func (a admin) Methods() map[string]plugin.Method {
	return map[string]plugin.Method{
		MethodPools: plugin.Handle(func(ctx context.Context, _ *struct{}) (*PoolsResponse, error) {
			pools, err := a.d.Pools(ctx)
			if err != nil {
				return nil, err
			}
			if pools == nil {
				pools = []PoolInfo{}
			}
			return &PoolsResponse{HostID: a.d.HostID(), Pools: pools}, nil
		}),
		MethodGC: plugin.Handle(func(ctx context.Context, q *GCRequest) (*GCResponse, error) {
			blocks, err := a.d.Collect(ctx, q.Apply)
			if err != nil {
				return nil, err
			}
			if blocks == nil {
				blocks = []GCBlock{}
			}
			return &GCResponse{Applied: q.Apply, Blocks: blocks}, nil
		}),
		MethodPool: plugin.Handle(func(ctx context.Context, q *PoolQuery) (*PoolResponse, error) {
			if q.Pool == "" {
				return nil, plugin.BadRequest("no pool given")
			}
			p, addrs, err := a.d.Pool(ctx, q.Pool)
			if err != nil {
				return nil, err
			}
			if addrs == nil {
				addrs = []AddrInfo{}
			}
			return &PoolResponse{Pool: *p, Addresses: addrs}, nil
		}),
	}
}

// AdminClient calls the admin methods of a running plugin, through a
// client of its admin socket.
type AdminClient struct{ c *plugin.Client }

// NewAdminClient wraps a plugin client.
func NewAdminClient(c *plugin.Client) *AdminClient { return &AdminClient{c} }

// Pools lists the plugin's pools.
func (a *AdminClient) Pools(ctx context.Context) (*PoolsResponse, error) {
	var out PoolsResponse
	return &out, a.c.Call(ctx, MethodPools, struct{}{}, &out)
}

// Pool shows one pool and its addresses.
func (a *AdminClient) Pool(ctx context.Context, ref string) (*PoolResponse, error) {
	var out PoolResponse
	return &out, a.c.Call(ctx, MethodPool, PoolQuery{Pool: ref}, &out)
}

// GC asks the plugin to free what is provably unused (apply) or to say
// what it would free.
func (a *AdminClient) GC(ctx context.Context, apply bool) (*GCResponse, error) {
	var out GCResponse
	return &out, a.c.Call(ctx, MethodGC, GCRequest{Apply: apply}, &out)
}
