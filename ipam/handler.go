package ipam

import (
	"context"
	"net"
	"net/http"
	"net/netip"

	"github.com/dockplug/dockplug/plugin"
)

// Driver is a remote IPAM driver. Errors are answered with their
// plugin.StatusOf status and {"Err": msg}, which the daemon reads (G12);
// every error aborts the daemon's operation (G13).
type Driver interface {
	GetCapabilities(ctx context.Context) (*CapabilitiesResponse, error)
	GetDefaultAddressSpaces(ctx context.Context) (*AddressSpacesResponse, error)
	// RequestPool gets a validated request: Pool and SubPool are empty or
	// CIDRs, and SubPool is only set with Pool and lies inside it.
	RequestPool(ctx context.Context, req *RequestPoolRequest) (*RequestPoolResponse, error)
	// ReleasePool gets a non-empty PoolID.
	ReleasePool(ctx context.Context, req *ReleasePoolRequest) error
	// RequestAddress gets a non-empty PoolID and an Address that is empty
	// or a bare IP.
	RequestAddress(ctx context.Context, req *RequestAddressRequest) (*RequestAddressResponse, error)
	// ReleaseAddress gets a non-empty PoolID and an Address that is empty
	// or a bare IP.
	ReleaseAddress(ctx context.Context, req *ReleaseAddressRequest) error
}

// Handler serves a Driver as the "IpamDriver" plugin kind.
type Handler struct {
	d Driver
}

// NewHandler returns a Handler for d, to pass to plugin.NewServer.
func NewHandler(d Driver) *Handler { return &Handler{d: d} }

// Implements returns "IpamDriver".
func (h *Handler) Implements() string { return Implements }

// Methods returns the six IpamDriver methods.
func (h *Handler) Methods() map[string]plugin.Method {
	return map[string]plugin.Method{
		MethodGetCapabilities:         h.getCapabilities,
		MethodGetDefaultAddressSpaces: h.getDefaultAddressSpaces,
		MethodRequestPool:             needBody(plugin.Handle(h.requestPool)),
		MethodReleasePool:             plugin.Handle(h.releasePool),
		MethodRequestAddress:          plugin.Handle(h.requestAddress),
		MethodReleaseAddress:          plugin.Handle(h.releaseAddress),
	}
}

// needBody refuses an empty body before m runs. The daemon sends every
// method that has arguments a JSON object, even when all its fields are
// zero, so an empty body is a retry that lost it: the daemon resends its
// drained request buffer (plugin.WithDrainedRetry). RequestPool needs this:
// its zero request is valid (any pool in the space ""), and running it
// would allocate a pool nobody asked for. The other methods refuse an
// empty PoolID instead.
func needBody(m plugin.Method) plugin.Method {
	return func(ctx context.Context, body []byte) (any, error) {
		if len(body) == 0 {
			return nil, plugin.BadRequest("request has no body")
		}
		return m(ctx, body)
	}
}

// The daemon sends no body for these two (G19); whatever comes is ignored.
func (h *Handler) getCapabilities(ctx context.Context, _ []byte) (any, error) {
	resp, err := h.d.GetCapabilities(ctx)
	if err != nil {
		return nil, err
	}
	if resp != nil && resp.Error != "" {
		return nil, responseError(resp.Error)
	}
	return resp, nil
}

func (h *Handler) getDefaultAddressSpaces(ctx context.Context, _ []byte) (any, error) {
	resp, err := h.d.GetDefaultAddressSpaces(ctx)
	if err != nil {
		return nil, err
	}
	if resp != nil && resp.Error != "" {
		return nil, responseError(resp.Error)
	}
	return resp, nil
}

func (h *Handler) requestPool(ctx context.Context, req *RequestPoolRequest) (*RequestPoolResponse, error) {
	if err := validatePoolRequest(req); err != nil {
		return nil, err
	}
	resp, err := h.d.RequestPool(ctx, req)
	if err != nil {
		return nil, err
	}
	switch {
	case resp == nil:
		return nil, driverError("driver returned no pool")
	case resp.Error != "":
		return nil, responseError(resp.Error)
	case resp.PoolID == "":
		// Every later call names the pool by its ID, and we reject an empty one.
		return nil, driverError("driver returned an empty PoolID for pool %q", resp.Pool)
	}
	if _, err := netip.ParsePrefix(resp.Pool); err != nil {
		return nil, driverError("driver returned an invalid Pool %q: %v", resp.Pool, err)
	}
	return resp, nil
}

func (h *Handler) releasePool(ctx context.Context, req *ReleasePoolRequest) (*struct{}, error) {
	if req.PoolID == "" {
		return nil, plugin.BadRequest("PoolID is required")
	}
	return nil, h.d.ReleasePool(ctx, req)
}

func (h *Handler) requestAddress(ctx context.Context, req *RequestAddressRequest) (*RequestAddressResponse, error) {
	if req.PoolID == "" {
		return nil, plugin.BadRequest("PoolID is required")
	}
	if err := validateIP(req.Address); err != nil {
		return nil, err
	}
	resp, err := h.d.RequestAddress(ctx, req)
	if err != nil {
		return nil, err
	}
	switch {
	case resp == nil:
		return nil, driverError("driver returned no address")
	case resp.Error != "":
		return nil, responseError(resp.Error)
	case resp.Address == "":
		return nil, driverError("driver returned no address")
	}
	// The daemon parses it with net.ParseCIDR; so do we.
	if _, _, err := net.ParseCIDR(resp.Address); err != nil {
		return nil, driverError("driver returned an invalid Address %q (want CIDR form, e.g. 10.0.0.2/24): %v", resp.Address, err)
	}
	return resp, nil
}

func (h *Handler) releaseAddress(ctx context.Context, req *ReleaseAddressRequest) (*struct{}, error) {
	if req.PoolID == "" {
		return nil, plugin.BadRequest("PoolID is required")
	}
	if err := validateIP(req.Address); err != nil {
		return nil, err
	}
	return nil, h.d.ReleaseAddress(ctx, req)
}

// validatePoolRequest checks what the daemon guarantees: CIDRs, and a
// SubPool only within a Pool (libnetwork's ipamapi.PoolRequest contract).
func validatePoolRequest(req *RequestPoolRequest) error {
	var pool netip.Prefix
	if req.Pool != "" {
		p, err := netip.ParsePrefix(req.Pool)
		if err != nil {
			return plugin.BadRequest("invalid Pool %q: want CIDR form, e.g. 10.1.0.0/16", req.Pool)
		}
		pool = p.Masked()
	}
	if req.SubPool == "" {
		return nil
	}
	sub, err := netip.ParsePrefix(req.SubPool)
	if err != nil {
		return plugin.BadRequest("invalid SubPool %q: want CIDR form, e.g. 10.1.2.0/24", req.SubPool)
	}
	if req.Pool == "" {
		return plugin.BadRequest("SubPool %q given without Pool", req.SubPool)
	}
	if sub.Bits() < pool.Bits() || !pool.Contains(sub.Addr()) {
		return plugin.BadRequest("SubPool %q is not inside Pool %q", req.SubPool, req.Pool)
	}
	return nil
}

// validateIP accepts "" or a bare IP, as the daemon sends (net.IP.String()).
func validateIP(s string) error {
	if s == "" {
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return plugin.BadRequest("invalid Address %q: want a bare IP without mask, e.g. 10.1.0.5", s)
	}
	return nil
}

// responseError turns a driver response's Error field into a non-200
// answer: a 200 would work with dockerd but not with clients that only look
// at "Err", and every client reads "Err" on a non-200 (G12).
func responseError(msg string) error {
	return &plugin.Error{Status: http.StatusInternalServerError, Msg: msg}
}

func driverError(format string, args ...any) error {
	return plugin.Errorf(http.StatusInternalServerError, format, args...)
}
