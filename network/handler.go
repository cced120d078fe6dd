package network

import (
	"context"
	"fmt"
	"net/http"

	"github.com/dockplug/dockplug/plugin"
)

// Full method names, as routed by plugin.Server.
const (
	mGetCapabilities             = Implements + ".GetCapabilities"
	mCreateNetwork               = Implements + ".CreateNetwork"
	mDeleteNetwork               = Implements + ".DeleteNetwork"
	mCreateEndpoint              = Implements + ".CreateEndpoint"
	mEndpointOperInfo            = Implements + ".EndpointOperInfo"
	mDeleteEndpoint              = Implements + ".DeleteEndpoint"
	mJoin                        = Implements + ".Join"
	mLeave                       = Implements + ".Leave"
	mDiscoverNew                 = Implements + ".DiscoverNew"
	mDiscoverDelete              = Implements + ".DiscoverDelete"
	mAllocateNetwork             = Implements + ".AllocateNetwork"
	mFreeNetwork                 = Implements + ".FreeNetwork"
	mGwAllocCheck                = Implements + ".GwAllocCheck"
	mProgramExternalConnectivity = Implements + ".ProgramExternalConnectivity"
	mRevokeExternalConnectivity  = Implements + ".RevokeExternalConnectivity"
)

// Handler serves a Driver as the NetworkDriver kind of a plugin.Server. It
// validates requests (400 for what the daemon never sends) and the driver's
// answers (500 for what the daemon would refuse, with the reason, instead of
// a rollback the operator cannot explain).
type Handler struct {
	d Driver
}

var _ plugin.Kind = (*Handler)(nil)

// NewHandler returns a Handler for d.
func NewHandler(d Driver) *Handler {
	if d == nil {
		panic("network.NewHandler: nil Driver")
	}
	return &Handler{d: d}
}

// Implements returns "NetworkDriver".
func (h *Handler) Implements() string { return Implements }

// Methods returns the mandatory methods, plus each optional one whose
// interface the driver implements. Unregistered methods are answered 404 by
// the Server, which the daemon reads as "not implemented".
func (h *Handler) Methods() map[string]plugin.Method {
	m := map[string]plugin.Method{
		mGetCapabilities:  h.getCapabilities,
		mCreateNetwork:    plugin.Handle(h.createNetwork),
		mDeleteNetwork:    plugin.Handle(h.deleteNetwork),
		mCreateEndpoint:   plugin.Handle(h.createEndpoint),
		mEndpointOperInfo: plugin.Handle(h.endpointOperInfo),
		mDeleteEndpoint:   plugin.Handle(h.deleteEndpoint),
		mJoin:             plugin.Handle(h.join),
		mLeave:            plugin.Handle(h.leave),
	}
	if d, ok := h.d.(Discoverer); ok {
		m[mDiscoverNew] = needBody(plugin.Handle(func(ctx context.Context, req *DiscoveryNotification) (any, error) {
			return nil, d.DiscoverNew(ctx, req)
		}))
		m[mDiscoverDelete] = needBody(plugin.Handle(func(ctx context.Context, req *DiscoveryNotification) (any, error) {
			return nil, d.DiscoverDelete(ctx, req)
		}))
	}
	if d, ok := h.d.(NetworkAllocator); ok {
		m[mAllocateNetwork] = plugin.Handle(func(ctx context.Context, req *AllocateNetworkRequest) (*AllocateNetworkResponse, error) {
			if err := needNetwork(req.NetworkID); err != nil {
				return nil, err
			}
			if err := validatePools(req.IPv4Data, req.IPv6Data); err != nil {
				return nil, err
			}
			return d.AllocateNetwork(ctx, req)
		})
		m[mFreeNetwork] = plugin.Handle(func(ctx context.Context, req *FreeNetworkRequest) (any, error) {
			if err := needNetwork(req.NetworkID); err != nil {
				return nil, err
			}
			return nil, d.FreeNetwork(ctx, req)
		})
	}
	if d, ok := h.d.(GwAllocChecker); ok {
		m[mGwAllocCheck] = needBody(plugin.Handle(func(ctx context.Context, req *GwAllocCheckRequest) (*GwAllocCheckResponse, error) {
			return d.GwAllocCheck(ctx, req)
		}))
	}
	if d, ok := h.d.(ExternalConnectivity); ok {
		m[mProgramExternalConnectivity] = plugin.Handle(func(ctx context.Context, req *ProgramExternalConnectivityRequest) (any, error) {
			if err := needEndpoint(req.NetworkID, req.EndpointID); err != nil {
				return nil, err
			}
			return nil, d.ProgramExternalConnectivity(ctx, req)
		})
		m[mRevokeExternalConnectivity] = plugin.Handle(func(ctx context.Context, req *RevokeExternalConnectivityRequest) (any, error) {
			if err := needEndpoint(req.NetworkID, req.EndpointID); err != nil {
				return nil, err
			}
			return nil, d.RevokeExternalConnectivity(ctx, req)
		})
	}
	return m
}

// needBody refuses an empty body before m runs. The daemon sends every
// method that has arguments a JSON object, even when all its fields are
// zero, so an empty body is a retry that lost it: the daemon resends its
// drained request buffer (plugin.WithDrainedRetry). The methods with
// required IDs refuse an empty one; this is for those with no field the
// Handler requires, whose zero request would reach the driver
// (GwAllocCheck, DiscoverNew, DiscoverDelete).
func needBody(m plugin.Method) plugin.Method {
	return func(ctx context.Context, body []byte) (any, error) {
		if len(body) == 0 {
			return nil, plugin.BadRequest("request has no body")
		}
		return m(ctx, body)
	}
}

// getCapabilities ignores the body: the daemon sends none (G19).
func (h *Handler) getCapabilities(ctx context.Context, _ []byte) (any, error) {
	c, err := h.d.GetCapabilities(ctx)
	if err != nil {
		return nil, err
	}
	if err := CheckCapabilities(c); err != nil {
		return nil, driverBug("the daemon would not register the driver: %w", err)
	}
	if _, ok := h.d.(GwAllocChecker); c.GwAllocChecker && !ok {
		return nil, driverBug("GwAllocChecker is set but the driver has no GwAllocCheck method: every network create would fail")
	}
	return c, nil
}

func (h *Handler) createNetwork(ctx context.Context, req *CreateNetworkRequest) (any, error) {
	if err := needNetwork(req.NetworkID); err != nil {
		return nil, err
	}
	if err := validatePools(req.IPv4Data, req.IPv6Data); err != nil {
		return nil, err
	}
	return nil, h.d.CreateNetwork(ctx, req)
}

func (h *Handler) deleteNetwork(ctx context.Context, req *DeleteNetworkRequest) (any, error) {
	if err := needNetwork(req.NetworkID); err != nil {
		return nil, err
	}
	return nil, h.d.DeleteNetwork(ctx, req)
}

func (h *Handler) createEndpoint(ctx context.Context, req *CreateEndpointRequest) (*CreateEndpointResponse, error) {
	if err := needEndpoint(req.NetworkID, req.EndpointID); err != nil {
		return nil, err
	}
	if req.Interface == nil {
		req.Interface = &EndpointInterface{}
	}
	if err := validateInterface(req.Interface); err != nil {
		return nil, badRequest(err)
	}
	sent := *req.Interface // the driver may modify req
	resp, err := h.d.CreateEndpoint(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, nil
	}
	if err := CheckInterfaceRule(&sent, resp.Interface); err != nil {
		// The daemon would call DeleteEndpoint after a successful call
		// and report "...; rolled back". Answering 500 stops that, so
		// roll back here or the driver keeps an endpoint nobody owns.
		undo := func(ctx context.Context) error {
			return h.d.DeleteEndpoint(ctx, &DeleteEndpointRequest{NetworkID: req.NetworkID, EndpointID: req.EndpointID})
		}
		return nil, rollback(ctx, undo, "DeleteEndpoint", "the daemon refuses this CreateEndpoint answer (G10: return only Interface fields that were empty in the request): %w", err)
	}
	return resp, nil
}

func (h *Handler) endpointOperInfo(ctx context.Context, req *EndpointOperInfoRequest) (*EndpointOperInfoResponse, error) {
	if err := needEndpoint(req.NetworkID, req.EndpointID); err != nil {
		return nil, err
	}
	return h.d.EndpointOperInfo(ctx, req)
}

func (h *Handler) deleteEndpoint(ctx context.Context, req *DeleteEndpointRequest) (any, error) {
	if err := needEndpoint(req.NetworkID, req.EndpointID); err != nil {
		return nil, err
	}
	return nil, h.d.DeleteEndpoint(ctx, req)
}

func (h *Handler) join(ctx context.Context, req *JoinRequest) (*JoinResponse, error) {
	if err := needEndpoint(req.NetworkID, req.EndpointID); err != nil {
		return nil, err
	}
	if req.SandboxKey == "" {
		return nil, plugin.BadRequest("request has no SandboxKey")
	}
	resp, err := h.d.Join(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := CheckJoinResponse(resp); err != nil {
		undo := func(ctx context.Context) error {
			return h.d.Leave(ctx, &LeaveRequest{NetworkID: req.NetworkID, EndpointID: req.EndpointID})
		}
		return nil, rollback(ctx, undo, "Leave", "the daemon refuses this Join answer: %w", err)
	}
	return resp, nil
}

func (h *Handler) leave(ctx context.Context, req *LeaveRequest) (any, error) {
	if err := needEndpoint(req.NetworkID, req.EndpointID); err != nil {
		return nil, err
	}
	return nil, h.d.Leave(ctx, req)
}

// rollback undoes a call whose answer the daemon would refuse and returns
// the 500 that explains it.
func rollback(ctx context.Context, undo func(context.Context) error, undoName, format string, args ...any) error {
	// The daemon may already have hung up; the rollback must still run.
	if uerr := undo(context.WithoutCancel(ctx)); uerr != nil {
		return driverBug(format+"; rollback with %s failed: %v", append(args, undoName, uerr)...)
	}
	return driverBug(format+"; rolled back with %s", append(args, undoName)...)
}

func driverBug(format string, args ...any) error {
	return &plugin.Error{Status: http.StatusInternalServerError, Err: fmt.Errorf("driver bug: "+format, args...)}
}

// badRequest keeps err's chain. (plugin.Errorf with %w would print the
// cause twice: its Msg already holds it and Error appends Err again.)
func badRequest(err error) error {
	return &plugin.Error{Status: http.StatusBadRequest, Err: err}
}

func needNetwork(nid string) error {
	if nid == "" {
		return plugin.BadRequest("request has no NetworkID")
	}
	return nil
}

func needEndpoint(nid, eid string) error {
	if err := needNetwork(nid); err != nil {
		return err
	}
	if eid == "" {
		return plugin.BadRequest("request has no EndpointID")
	}
	return nil
}

func validatePools(v4, v6 []*IPAMData) error {
	if err := validateIPAMData("IPv4Data", v4); err != nil {
		return badRequest(err)
	}
	if err := validateIPAMData("IPv6Data", v6); err != nil {
		return badRequest(err)
	}
	return nil
}
