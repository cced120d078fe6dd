package network

import "context"

// Driver is a libnetwork remote network driver. Requests reach it validated:
// the IDs the daemon always sends are non-empty, addresses parse, and
// CreateEndpointRequest.Interface is non-nil. Return plugin errors
// (plugin.NotFound, plugin.BadRequest...) to choose the HTTP status; any
// other error is a 500. The daemon sees "NetworkDriver.<Method>: <error>".
//
// libnetwork never replays CreateNetwork or CreateEndpoint after a plugin
// restart: keep your own state (G8).
type Driver interface {
	// GetCapabilities is asked once when the daemon registers the driver.
	GetCapabilities(ctx context.Context) (*Capabilities, error)
	CreateNetwork(ctx context.Context, req *CreateNetworkRequest) error
	// DeleteNetwork errors are only logged by the daemon.
	DeleteNetwork(ctx context.Context, req *DeleteNetworkRequest) error
	// CreateEndpoint may return nil. See CheckInterfaceRule for what the
	// answer may contain (G10).
	CreateEndpoint(ctx context.Context, req *CreateEndpointRequest) (*CreateEndpointResponse, error)
	EndpointOperInfo(ctx context.Context, req *EndpointOperInfoRequest) (*EndpointOperInfoResponse, error)
	// DeleteEndpoint must be idempotent.
	DeleteEndpoint(ctx context.Context, req *DeleteEndpointRequest) error
	// Join must have created the link InterfaceName.SrcName in the
	// daemon's network namespace before it returns.
	Join(ctx context.Context, req *JoinRequest) (*JoinResponse, error)
	Leave(ctx context.Context, req *LeaveRequest) error
}

// The optional methods. A Driver that lacks one of these interfaces does not
// serve the method, so the daemon gets a 404, which it reads as "not
// implemented".

// Discoverer receives swarm node discovery (global connectivity scope only).
type Discoverer interface {
	DiscoverNew(ctx context.Context, req *DiscoveryNotification) error
	DiscoverDelete(ctx context.Context, req *DiscoveryNotification) error
}

// NetworkAllocator allocates networks on swarm managers. A driver with
// Scope global needs it: swarm fails network allocation when AllocateNetwork
// errors, including with a 404 (G18).
type NetworkAllocator interface {
	AllocateNetwork(ctx context.Context, req *AllocateNetworkRequest) (*AllocateNetworkResponse, error)
	FreeNetwork(ctx context.Context, req *FreeNetworkRequest) error
}

// GwAllocChecker answers GwAllocCheck; the daemon only calls it when
// Capabilities.GwAllocChecker is set.
type GwAllocChecker interface {
	GwAllocCheck(ctx context.Context, req *GwAllocCheckRequest) (*GwAllocCheckResponse, error)
}

// ExternalConnectivity programs and revokes the gateway endpoint's external
// connectivity (port publishing, NAT...). Without it the daemon's 404 counts
// as success. Conversely, never answer a real failure of these two methods
// with a 404 (plugin.NotFound): the daemon would take it as success too.
type ExternalConnectivity interface {
	ProgramExternalConnectivity(ctx context.Context, req *ProgramExternalConnectivityRequest) error
	RevokeExternalConnectivity(ctx context.Context, req *RevokeExternalConnectivityRequest) error
}
