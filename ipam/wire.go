package ipam

// Implements is the string IPAM plugins list in Plugin.Activate (G20).
const Implements = "IpamDriver"

// Full method names, as posted by the daemon.
const (
	MethodGetCapabilities         = "IpamDriver.GetCapabilities"
	MethodGetDefaultAddressSpaces = "IpamDriver.GetDefaultAddressSpaces"
	MethodRequestPool             = "IpamDriver.RequestPool"
	MethodReleasePool             = "IpamDriver.ReleasePool"
	MethodRequestAddress          = "IpamDriver.RequestAddress"
	MethodReleaseAddress          = "IpamDriver.ReleaseAddress"
)

// Keys (and one value) the daemon puts into Options and reads from Data.
const (
	// OptRequestAddressType is set in RequestAddress options when the
	// daemon asks for the gateway; its value is then Gateway.
	OptRequestAddressType = "RequestAddressType"
	// Gateway is the value of OptRequestAddressType for gateway requests,
	// and the RequestPool Data key under which a driver may return the
	// gateway as a CIDR (the daemon then skips the gateway RequestAddress).
	Gateway = "com.docker.network.gateway"
	// OptEndpointName carries the endpoint name in endpoint RequestAddress
	// calls.
	OptEndpointName = "com.docker.network.endpoint.name"
	// OptMACAddress carries the endpoint's MAC address when the driver
	// declared RequiresMACAddress.
	OptMACAddress = "com.docker.network.endpoint.macaddress"
	// OptSerial set to "true" asks for serial instead of first-free
	// allocation (honoured by the built-in IPAM).
	OptSerial = "com.docker.network.ipam.serial"
)

// CapabilitiesResponse answers GetCapabilities.
type CapabilitiesResponse struct {
	// RequiresMACAddress makes the daemon generate a MAC for every endpoint
	// and pass it in OptMACAddress.
	RequiresMACAddress bool `json:"RequiresMACAddress"`
	// RequiresRequestReplay makes the daemon replay RequestPool and
	// RequestAddress for stored networks at start (for stateless IPAMs).
	RequiresRequestReplay bool `json:"RequiresRequestReplay"`
	// Error is the daemon's error key on a 200 answer (G12). Drivers
	// should return an error instead.
	Error string `json:"Error,omitempty"`
}

// AddressSpacesResponse answers GetDefaultAddressSpaces.
type AddressSpacesResponse struct {
	LocalDefaultAddressSpace  string `json:"LocalDefaultAddressSpace"`
	GlobalDefaultAddressSpace string `json:"GlobalDefaultAddressSpace"`
	Error                     string `json:"Error,omitempty"`
}

// RequestPoolRequest asks for an address pool.
type RequestPoolRequest struct {
	AddressSpace string `json:"AddressSpace"`
	// Pool is the requested pool in CIDR form, or "" for any pool. A pool
	// with an unspecified address (0.0.0.0/24) means any pool of that size.
	Pool string `json:"Pool"`
	// SubPool, a CIDR inside Pool, limits dynamic allocation (--ip-range).
	// It is only ever sent together with Pool.
	SubPool string `json:"SubPool"`
	// Options are the --ipam-opt values; may be nil.
	Options map[string]string `json:"Options"`
	V6      bool              `json:"V6"`
}

// RequestPoolResponse answers RequestPool.
type RequestPoolResponse struct {
	// PoolID identifies the pool in every later call; must not be empty.
	PoolID string `json:"PoolID"`
	// Pool is the allocated pool in CIDR form (required).
	Pool string `json:"Pool"`
	// Data may hold the gateway under the key Gateway.
	Data  map[string]string `json:"Data,omitempty"`
	Error string            `json:"Error,omitempty"`
}

// ReleasePoolRequest releases a pool.
type ReleasePoolRequest struct {
	PoolID string `json:"PoolID"`
}

// RequestAddressRequest asks for an address from a pool.
type RequestAddressRequest struct {
	PoolID string `json:"PoolID"`
	// Address is the preferred address, a bare IP without mask, or "" for
	// any address.
	Address string `json:"Address"`
	// Options may be nil (aux addresses); see the Opt constants.
	Options map[string]string `json:"Options"`
}

// IsGateway reports whether the daemon asks for the network's gateway.
func (r *RequestAddressRequest) IsGateway() bool {
	return r.Options[OptRequestAddressType] == Gateway
}

// RequestAddressResponse answers RequestAddress.
type RequestAddressResponse struct {
	// Address is the allocated address in CIDR form, e.g. 10.0.0.2/24
	// (required: the daemon fails with "no address returned" without it).
	Address string            `json:"Address"`
	Data    map[string]string `json:"Data,omitempty"`
	Error   string            `json:"Error,omitempty"`
}

// ReleaseAddressRequest releases an address.
type ReleaseAddressRequest struct {
	PoolID string `json:"PoolID"`
	// Address is a bare IP. The daemon sends "" if it has no address to
	// name, which drivers should treat as nothing to release.
	Address string `json:"Address"`
}

// releaseResponse is what the daemon decodes the answers of ReleasePool and
// ReleaseAddress into: only the error key matters.
type releaseResponse struct {
	Error string `json:"Error,omitempty"`
}

func (r *CapabilitiesResponse) remoteError() string   { return r.Error }
func (r *AddressSpacesResponse) remoteError() string  { return r.Error }
func (r *RequestPoolResponse) remoteError() string    { return r.Error }
func (r *RequestAddressResponse) remoteError() string { return r.Error }
func (r *releaseResponse) remoteError() string        { return r.Error }
