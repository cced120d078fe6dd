// Package driver is dockplug's IPAM plugin: pools and addresses for IPv4
// and IPv6, in two address spaces. "local" keeps its state in the embedded
// bbolt file; "global" keeps it in a shared store (etcd) so one pool can
// span hosts. Every allocation is durable before the reply, so the daemon
// never needs to replay requests (RequiresRequestReplay is false).
package driver

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
)

// Address space names, as answered by GetDefaultAddressSpaces.
const (
	LocalSpace  = "local"
	GlobalSpace = "global"
)

// Space is one address space's pools and addresses. The driver routes each
// call to the space named in the request or in the PoolID's prefix.
type Space interface {
	RequestPool(ctx context.Context, req PoolRequest) (PoolInfo, error)
	ReleasePool(ctx context.Context, poolID string) error
	RequestAddress(ctx context.Context, req AddrRequest) (netip.Addr, error)
	// ReleaseAddress frees addr; an address not allocated is not an error
	// (the daemon releases gateways it took from Data).
	ReleaseAddress(ctx context.Context, poolID string, addr netip.Addr) error
	Pools(ctx context.Context) ([]PoolInfo, error)
	Addresses(ctx context.Context, poolID string) ([]AddrInfo, error)
	Close() error
}

// PoolRequest is a RequestPool with its strings parsed.
type PoolRequest struct {
	Pool    netip.Prefix // invalid: any pool from the default pools
	SubPool netip.Prefix // invalid: the whole pool
	// Size is the prefix length of a dynamic pool (Pool invalid); 0: the
	// default pools' own sizes.
	Size    int
	V6      bool
	Options map[string]string
	// Exclude are prefixes a dynamic pool must not overlap (host routes).
	Exclude []netip.Prefix
}

// AddrRequest is a RequestAddress with its strings parsed.
type AddrRequest struct {
	PoolID   string
	Address  netip.Addr // invalid: any free address
	Serial   bool
	Gateway  bool
	Endpoint string
	MAC      string
}

// PoolInfo describes a pool, for the daemon and for `dockplug ipam`.
type PoolInfo struct {
	ID        string       `json:"id"`
	Space     string       `json:"space"`
	Pool      netip.Prefix `json:"pool"`
	SubPool   netip.Prefix `json:"subPool,omitzero"`
	Dynamic   bool         `json:"dynamic"`
	Gateway   netip.Addr   `json:"gateway,omitzero"`
	Allocated uint64       `json:"allocated"`
	Hosts     []string     `json:"hosts,omitempty"` // global: the hosts holding the pool
	CreatedAt time.Time    `json:"createdAt"`
}

// AddrInfo is one allocated address and who holds it.
type AddrInfo struct {
	Address  netip.Addr `json:"address"`
	Endpoint string     `json:"endpoint,omitempty"`
	Gateway  bool       `json:"gateway,omitempty"`
	Aux      bool       `json:"aux,omitempty"` // global: an aux address, held by Host (comma-separated hosts)
	Host     string     `json:"host"`
	MAC      string     `json:"mac,omitempty"`
	At       time.Time  `json:"at"`
}

// serialPool reports whether the pool was created with
// --ipam-opt com.docker.network.ipam.serial=true: dockerd 20.10 does not pass
// the option on with each address request, so the pool's option counts too.
func serialPool(opts map[string]string) bool {
	return opts["com.docker.network.ipam.serial"] == "true"
}

// asPluginError maps allocator errors to statuses with clear messages.
func asPluginError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, alloc.ErrInUse), errors.Is(err, alloc.ErrPoolOverlap):
		return &plugin.Error{Status: 409, Msg: err.Error(), Err: err}
	case errors.Is(err, alloc.ErrPoolExhausted), errors.Is(err, alloc.ErrNoMoreSubnets):
		return &plugin.Error{Status: 507, Msg: err.Error(), Err: err}
	case errors.Is(err, alloc.ErrOutOfRange), errors.Is(err, alloc.ErrReserved), errors.Is(err, alloc.ErrInvalidPrefix):
		return &plugin.Error{Status: 400, Msg: err.Error(), Err: err}
	}
	return err
}
