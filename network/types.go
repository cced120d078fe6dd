package network

// Wire types. The JSON keys are exactly the Go field names the daemon uses
// (daemon/libnetwork/drivers/remote/api): the daemon encodes with no tags and
// decodes case-insensitively, but we spell every key out so that a rename
// here can never change the wire. Request fields carry no omitempty, so the
// Client sends what dockerd sends (for instance the empty strings of an
// unset EndpointInterface field, or "Options":null).

// Implements is the Plugin.Activate string of the network driver kind (G20).
const Implements = "NetworkDriver"

// Scopes a driver reports in Capabilities.
const (
	ScopeLocal  = "local"
	ScopeGlobal = "global"
)

// Capabilities answers NetworkDriver.GetCapabilities, which the daemon sends
// with an empty body once per registration (not again after a v1 plugin
// restarts).
type Capabilities struct {
	// Scope is required and must be ScopeLocal or ScopeGlobal; anything else
	// makes the daemon refuse to register the driver. ScopeGlobal makes swarm
	// managers call AllocateNetwork/FreeNetwork (G18).
	Scope string `json:"Scope"`
	// ConnectivityScope is ScopeLocal, ScopeGlobal or "" (same as Scope).
	// Only global-connectivity drivers receive DiscoverNew/DiscoverDelete.
	ConnectivityScope string `json:"ConnectivityScope"`
	// GwAllocChecker asks the daemon to send GwAllocCheck before it
	// allocates a network's gateway addresses (Engine 28+). The driver must
	// then implement GwAllocChecker.
	GwAllocChecker bool `json:"GwAllocChecker"`
}

// EffectiveConnectivityScope is ConnectivityScope, or Scope when it is
// empty, as the daemon resolves it.
func (c *Capabilities) EffectiveConnectivityScope() string {
	if c.ConnectivityScope == "" {
		return c.Scope
	}
	return c.ConnectivityScope
}

// IPAMData is one address pool of a network (driverapi.IPAMData). The daemon
// encodes it with a custom marshaller: addresses are strings, Gateway and
// AuxAddresses are left out when unset.
type IPAMData struct {
	AddressSpace string `json:"AddressSpace"`
	// Pool is the subnet in CIDR form, e.g. "172.18.0.0/16".
	Pool string `json:"Pool"`
	// Gateway is the gateway address WITH the pool's prefix length, e.g.
	// "172.18.0.1/16" (not a bare IP).
	Gateway string `json:"Gateway,omitempty"`
	// AuxAddresses maps names to "ip/len" reserved addresses.
	AuxAddresses map[string]string `json:"AuxAddresses,omitempty"`
}

// CreateNetworkRequest is the body of NetworkDriver.CreateNetwork.
type CreateNetworkRequest struct {
	NetworkID string `json:"NetworkID"`
	// Options holds OptionGeneric (the user's -o options, see
	// GenericOptions), OptionEnableIPv4, OptionEnableIPv6 and
	// OptionInternal. Labels are not sent.
	Options map[string]any `json:"Options"`
	// IPv4Data and IPv6Data are the pools; a disabled family is [].
	IPv4Data []*IPAMData `json:"IPv4Data"`
	IPv6Data []*IPAMData `json:"IPv6Data"`
}

// DeleteNetworkRequest is the body of NetworkDriver.DeleteNetwork. The daemon
// only logs errors and deletes the network anyway.
type DeleteNetworkRequest struct {
	NetworkID string `json:"NetworkID"`
}

// EndpointInterface is the interface of an endpoint. In a CreateEndpoint
// request the daemon fills in what it already knows ("" = unset); in the
// answer the driver may fill in only fields that were "" (G10, see
// CheckInterfaceRule).
type EndpointInterface struct {
	// Address and AddressIPv6 are CIDRs with the host address,
	// e.g. "172.18.0.2/16".
	Address     string `json:"Address"`
	AddressIPv6 string `json:"AddressIPv6"`
	// MacAddress is "aa:bb:cc:dd:ee:ff" here (unlike the base64 of the
	// OptionMacAddress endpoint option).
	MacAddress string `json:"MacAddress"`
}

// CreateEndpointRequest is the body of NetworkDriver.CreateEndpoint.
type CreateEndpointRequest struct {
	NetworkID  string `json:"NetworkID"`
	EndpointID string `json:"EndpointID"`
	// Interface is never null from the daemon; the Handler turns a null
	// into an empty interface so drivers need not check.
	Interface *EndpointInterface `json:"Interface"`
	// Options are the endpoint options: the user's --driver-opt keys at the
	// top level, plus OptionMacAddress, OptionPortMap,
	// OptionExposedPorts, OptionIfname when they apply.
	Options map[string]any `json:"Options"`
}

// CreateEndpointResponse answers CreateEndpoint. A nil Interface (or one with
// only empty fields) is always safe.
type CreateEndpointResponse struct {
	Interface *EndpointInterface `json:"Interface"`
}

// EndpointOperInfoRequest is the body of NetworkDriver.EndpointOperInfo.
type EndpointOperInfoRequest struct {
	NetworkID  string `json:"NetworkID"`
	EndpointID string `json:"EndpointID"`
}

// EndpointOperInfoResponse answers EndpointOperInfo. The daemon calls it on
// every inspect/ps/port and swallows errors; Value is kept as a plain JSON
// map, so port mappings reported here never reach `docker ps` (G11).
type EndpointOperInfoResponse struct {
	Value map[string]any `json:"Value"`
}

// DeleteEndpointRequest is the body of NetworkDriver.DeleteEndpoint. It must
// be idempotent: the daemon also sends it to roll back a failed
// CreateEndpoint and for stale endpoints at start (G9); errors are logged.
type DeleteEndpointRequest struct {
	NetworkID  string `json:"NetworkID"`
	EndpointID string `json:"EndpointID"`
}

// JoinRequest is the body of NetworkDriver.Join.
type JoinRequest struct {
	NetworkID  string `json:"NetworkID"`
	EndpointID string `json:"EndpointID"`
	// SandboxKey is the path of the container's network namespace, e.g.
	// /var/run/docker/netns/<id>.
	SandboxKey string `json:"SandboxKey"`
	// Options are the sandbox options (OptionPortMap,
	// OptionExposedPorts), not the endpoint's.
	Options map[string]any `json:"Options"`
}

// InterfaceName tells the daemon which host link to move into the sandbox.
type InterfaceName struct {
	// SrcName is a link in the daemon's own network namespace that must
	// exist when Join returns; the daemon moves it into the sandbox. ""
	// adds no interface.
	SrcName string `json:"SrcName"`
	// DstPrefix is the in-container name prefix; the daemon appends the
	// lowest free number (eth0, eth1, ...).
	DstPrefix string `json:"DstPrefix"`
	// DstName, an exact in-container name, is ignored by daemons without
	// moby/moby#52866 (G17); set DstPrefix too.
	DstName string `json:"DstName,omitempty"`
}

// Route types of StaticRoute.
const (
	RouteNextHop   = 0 // via NextHop, a sandbox route
	RouteConnected = 1 // on-link on this interface
)

// StaticRoute is a route the daemon adds in the sandbox.
type StaticRoute struct {
	Destination string `json:"Destination"` // CIDR
	RouteType   int    `json:"RouteType"`
	NextHop     string `json:"NextHop"` // bare IP, needed for RouteNextHop
}

// JoinResponse answers Join. The daemon validates it after the call and, if
// it is unusable, sends Leave to roll back (see CheckJoinResponse).
type JoinResponse struct {
	InterfaceName *InterfaceName `json:"InterfaceName"`
	// Gateway and GatewayIPv6 are bare IPs (no mask). GatewayIPv6 is dropped
	// if the endpoint has no IPv6 address.
	Gateway      string        `json:"Gateway"`
	GatewayIPv6  string        `json:"GatewayIPv6"`
	StaticRoutes []StaticRoute `json:"StaticRoutes"`
	// DisableGatewayService stops the daemon from attaching the container
	// to docker_gwbridge when no Join gave it a default route.
	DisableGatewayService bool `json:"DisableGatewayService"`
}

// LeaveRequest is the body of NetworkDriver.Leave (errors are only logged).
type LeaveRequest struct {
	NetworkID  string `json:"NetworkID"`
	EndpointID string `json:"EndpointID"`
}

// Discovery types of DiscoveryNotification. The daemon forwards only
// NodeDiscovery to remote drivers.
const (
	NodeDiscovery        = 1
	EncryptionKeysConfig = 2
	EncryptionKeysUpdate = 3
)

// DiscoveryNotification is the body of DiscoverNew and DiscoverDelete, sent
// in swarm mode to drivers whose connectivity scope is global.
type DiscoveryNotification struct {
	DiscoveryType int `json:"DiscoveryType"`
	// DiscoveryData is {Address, BindAddress, Self} for NodeDiscovery; see
	// NodeData.
	DiscoveryData any `json:"DiscoveryData"`
}

// NodeDiscoveryData is the DiscoveryData of a NodeDiscovery notification
// (capital Self, unlike the docs).
type NodeDiscoveryData struct {
	Address     string `json:"Address"`
	BindAddress string `json:"BindAddress"`
	Self        bool   `json:"Self"`
}

// AllocateNetworkRequest is the body of NetworkDriver.AllocateNetwork, sent by
// swarm managers to Scope=global drivers (G18).
type AllocateNetworkRequest struct {
	NetworkID string `json:"NetworkID"`
	// Options are the network spec's driver options merged with the
	// previous driver state.
	Options map[string]string `json:"Options"`
	// IPv4Data carries Pool and Gateway (CIDR), no AddressSpace; IPv6Data
	// is always null.
	IPv4Data []*IPAMData `json:"IPv4Data"`
	IPv6Data []*IPAMData `json:"IPv6Data"`
}

// AllocateNetworkResponse answers AllocateNetwork.
type AllocateNetworkResponse struct {
	// Options REPLACE the network's driver state and are what workers get
	// as CreateNetwork options. nil is sent as null and drops the user's
	// -o options (G18): echo back what the workers need.
	Options map[string]string `json:"Options"`
}

// FreeNetworkRequest is the body of NetworkDriver.FreeNetwork (swarm managers).
type FreeNetworkRequest struct {
	NetworkID string `json:"NetworkID"`
}

// GwAllocCheckRequest is the body of NetworkDriver.GwAllocCheck, sent before
// IPAM allocation and CreateNetwork to drivers with GwAllocChecker set.
type GwAllocCheckRequest struct {
	// Options has the same form as CreateNetworkRequest.Options.
	Options map[string]any `json:"Options"`
}

// GwAllocCheckResponse answers GwAllocCheck.
type GwAllocCheckResponse struct {
	SkipIPv4 bool `json:"SkipIPv4"` // don't reserve an IPv4 gateway address
	SkipIPv6 bool `json:"SkipIPv6"` // don't reserve an IPv6 gateway address
}

// ProgramExternalConnectivityRequest is the body of
// NetworkDriver.ProgramExternalConnectivity, sent when the endpoint becomes
// the sandbox's gateway endpoint.
type ProgramExternalConnectivityRequest struct {
	NetworkID  string `json:"NetworkID"`
	EndpointID string `json:"EndpointID"`
	// Options are Join's options, plus OptionNoProxy6To4 when another
	// endpoint is the IPv6 gateway.
	Options map[string]any `json:"Options"`
}

// RevokeExternalConnectivityRequest is the body of
// NetworkDriver.RevokeExternalConnectivity.
type RevokeExternalConnectivityRequest struct {
	NetworkID  string `json:"NetworkID"`
	EndpointID string `json:"EndpointID"`
}
