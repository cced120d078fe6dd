package network

import (
	"context"
	"fmt"

	"github.com/dockplug/dockplug/plugin"
)

// Client drives a network plugin the way dockerd's remote driver does
// (daemon/libnetwork/drivers/remote/driver.go):
//
//   - a non-200 answer is a *plugin.StatusError "NetworkDriver.X: <Err>";
//   - a 200 answer with a non-empty "Err" is the error "remote: <Err>";
//   - an empty 200 body is an error (G19);
//   - a 404 from ProgramExternalConnectivity or RevokeExternalConnectivity
//     is success (method not implemented);
//   - DiscoverNew/DiscoverDelete of any type but NodeDiscovery are dropped;
//   - answers the daemon cannot use fail as in the daemon, which then rolls
//     back: CreateEndpoint (CheckInterfaceRule) with DeleteEndpoint, Join
//     (CheckJoinResponse) with Leave, and the error ends in "; rolled back".
//
// Other optional methods surface their 404 as a *plugin.StatusError, so
// plugin.IsNotFound tells "not implemented" apart.
type Client struct {
	c *plugin.Client
}

// NewClient wraps a plugin client (see plugin.NewClient, plugin.Registry).
func NewClient(c *plugin.Client) *Client { return &Client{c: c} }

// Plugin returns the underlying plugin client.
func (c *Client) Plugin() *plugin.Client { return c.c }

// GetCapabilities asks for the driver's capabilities with an empty body, and
// fails as the daemon's registration does if Scope or ConnectivityScope is
// invalid (the answer is returned too).
func (c *Client) GetCapabilities(ctx context.Context) (*Capabilities, error) {
	var r capabilitiesReply
	if err := c.call(ctx, mGetCapabilities, nil, &r); err != nil {
		return nil, err
	}
	return &r.Capabilities, CheckCapabilities(&r.Capabilities)
}

// CreateNetwork creates a network.
func (c *Client) CreateNetwork(ctx context.Context, req *CreateNetworkRequest) error {
	return c.call(ctx, mCreateNetwork, req, &errReply{})
}

// DeleteNetwork deletes a network (the daemon only logs its errors).
func (c *Client) DeleteNetwork(ctx context.Context, req *DeleteNetworkRequest) error {
	return c.call(ctx, mDeleteNetwork, req, &errReply{})
}

// CreateEndpoint creates an endpoint. A nil req.Interface is sent as an empty
// interface, as the daemon always sends one. If the answer breaks the
// interface rule (G10), the endpoint is rolled back with DeleteEndpoint like
// the daemon does, and the answer is returned with the error.
func (c *Client) CreateEndpoint(ctx context.Context, req *CreateEndpointRequest) (*CreateEndpointResponse, error) {
	send := *req
	if send.Interface == nil {
		send.Interface = &EndpointInterface{}
	}
	var r createEndpointReply
	if err := c.call(ctx, mCreateEndpoint, &send, &r); err != nil {
		return nil, err
	}
	resp := &r.CreateEndpointResponse
	if err := CheckInterfaceRule(send.Interface, resp.Interface); err != nil {
		return resp, c.rollback(err, func() error {
			return c.DeleteEndpoint(context.WithoutCancel(ctx), &DeleteEndpointRequest{NetworkID: req.NetworkID, EndpointID: req.EndpointID})
		})
	}
	return resp, nil
}

// EndpointOperInfo returns the endpoint's operational data.
func (c *Client) EndpointOperInfo(ctx context.Context, req *EndpointOperInfoRequest) (*EndpointOperInfoResponse, error) {
	var r endpointOperInfoReply
	if err := c.call(ctx, mEndpointOperInfo, req, &r); err != nil {
		return nil, err
	}
	return &r.EndpointOperInfoResponse, nil
}

// DeleteEndpoint deletes an endpoint.
func (c *Client) DeleteEndpoint(ctx context.Context, req *DeleteEndpointRequest) error {
	return c.call(ctx, mDeleteEndpoint, req, &errReply{})
}

// Join joins an endpoint to a sandbox. If the answer is unusable
// (CheckJoinResponse), the join is rolled back with Leave like the daemon
// does, and the answer is returned with the error. InterfaceName.DstName is
// passed through as sent; daemons before moby/moby#52866 ignore it (G17).
func (c *Client) Join(ctx context.Context, req *JoinRequest) (*JoinResponse, error) {
	var r joinReply
	if err := c.call(ctx, mJoin, req, &r); err != nil {
		return nil, err
	}
	resp := &r.JoinResponse
	if err := CheckJoinResponse(resp); err != nil {
		return resp, c.rollback(err, func() error {
			return c.Leave(context.WithoutCancel(ctx), &LeaveRequest{NetworkID: req.NetworkID, EndpointID: req.EndpointID})
		})
	}
	return resp, nil
}

// Leave detaches an endpoint from its sandbox.
func (c *Client) Leave(ctx context.Context, req *LeaveRequest) error {
	return c.call(ctx, mLeave, req, &errReply{})
}

// DiscoverNew notifies a discovery event. Like the daemon, it sends only
// NodeDiscovery notifications and silently drops the others.
func (c *Client) DiscoverNew(ctx context.Context, req *DiscoveryNotification) error {
	if req.DiscoveryType != NodeDiscovery {
		return nil
	}
	return c.call(ctx, mDiscoverNew, req, &errReply{})
}

// DiscoverDelete notifies the end of a discovery event (NodeDiscovery only,
// like DiscoverNew).
func (c *Client) DiscoverDelete(ctx context.Context, req *DiscoveryNotification) error {
	if req.DiscoveryType != NodeDiscovery {
		return nil
	}
	return c.call(ctx, mDiscoverDelete, req, &errReply{})
}

// AllocateNetwork allocates a network on a swarm manager. The answer's
// Options replace the network's driver state, nil included (G18).
func (c *Client) AllocateNetwork(ctx context.Context, req *AllocateNetworkRequest) (*AllocateNetworkResponse, error) {
	var r allocateNetworkReply
	if err := c.call(ctx, mAllocateNetwork, req, &r); err != nil {
		return nil, err
	}
	return &r.AllocateNetworkResponse, nil
}

// FreeNetwork frees a network on a swarm manager.
func (c *Client) FreeNetwork(ctx context.Context, req *FreeNetworkRequest) error {
	return c.call(ctx, mFreeNetwork, req, &errReply{})
}

// GwAllocCheck asks which gateway addresses not to reserve. The daemon only
// calls it when Capabilities.GwAllocChecker is set; this Client does not
// check.
func (c *Client) GwAllocCheck(ctx context.Context, req *GwAllocCheckRequest) (*GwAllocCheckResponse, error) {
	var r gwAllocCheckReply
	if err := c.call(ctx, mGwAllocCheck, req, &r); err != nil {
		return nil, err
	}
	return &r.GwAllocCheckResponse, nil
}

// ProgramExternalConnectivity programs the gateway endpoint's external
// connectivity. A 404 is success, as in the daemon.
func (c *Client) ProgramExternalConnectivity(ctx context.Context, req *ProgramExternalConnectivityRequest) error {
	return notFoundIsOK(c.call(ctx, mProgramExternalConnectivity, req, &errReply{}))
}

// RevokeExternalConnectivity revokes it. A 404 is success, as in the daemon.
func (c *Client) RevokeExternalConnectivity(ctx context.Context, req *RevokeExternalConnectivityRequest) error {
	return notFoundIsOK(c.call(ctx, mRevokeExternalConnectivity, req, &errReply{}))
}

func notFoundIsOK(err error) error {
	if plugin.IsNotFound(err) {
		return nil
	}
	return err
}

// rollback runs undo after an answer the daemon refuses, and words the error
// as the daemon does.
func (c *Client) rollback(err error, undo func() error) error {
	if uerr := undo(); uerr != nil {
		return fmt.Errorf("%w; failed to roll back: %w", uerr, err)
	}
	return fmt.Errorf("%w; rolled back", err)
}

func (c *Client) call(ctx context.Context, method string, args any, ret reply) error {
	body, err := c.c.CallRaw(ctx, method, args)
	if err != nil {
		return err
	}
	return decodeReply(method, body, ret)
}

// decodeReply decodes a 200 body like the daemon: into the response struct
// with its embedded Err, then Err becomes "remote: <Err>".
func decodeReply(method string, body []byte, ret reply) error {
	if err := plugin.DecodeResponse(method, body, ret); err != nil {
		return err
	}
	if e := ret.remoteErr(); e != "" {
		return fmt.Errorf("remote: %s", e)
	}
	return nil
}

// Every daemon response struct embeds Response{Err string}; these replies do
// the same, so a 200 body decodes into one struct as in the daemon (a
// non-string Err is a decode error there too).
type reply interface{ remoteErr() string }

type errReply struct {
	Err string `json:"Err"`
}

func (r *errReply) remoteErr() string { return r.Err }

type capabilitiesReply struct {
	errReply
	Capabilities
}

type createEndpointReply struct {
	errReply
	CreateEndpointResponse
}

type endpointOperInfoReply struct {
	errReply
	EndpointOperInfoResponse
}

type joinReply struct {
	errReply
	JoinResponse
}

type allocateNetworkReply struct {
	errReply
	AllocateNetworkResponse
}

type gwAllocCheckReply struct {
	errReply
	GwAllocCheckResponse
}
