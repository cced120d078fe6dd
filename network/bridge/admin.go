package bridge

import (
	"context"

	"github.com/dockplug/dockplug/plugin"
)

// The operator's view (`dockplug net ls`). These methods are not part of
// the protocol the daemon speaks: serve them on the admin socket, never
// next to NetworkDriver on the daemon's socket.

// AdminKind is what Plugin.Activate lists on the admin socket.
const AdminKind = "dockplug.net-admin"

// MethodList lists networks, endpoints and published ports.
const MethodList = "DockplugNet.List"

// ListResponse is what the driver holds.
type ListResponse struct {
	Networks []NetworkInfo `json:"networks"`
}

// NetworkInfo is one network.
type NetworkInfo struct {
	ID         string         `json:"id"`
	Bridge     string         `json:"bridge"`
	Subnets    []string       `json:"subnets"`
	Gateways   []string       `json:"gateways"`
	Internal   bool           `json:"internal"`
	ICC        bool           `json:"icc"`
	Masquerade bool           `json:"masquerade"`
	MTU        int            `json:"mtu,omitempty"`
	Endpoints  []EndpointInfo `json:"endpoints"`
}

// EndpointInfo is one endpoint.
type EndpointInfo struct {
	ID        string   `json:"id"`
	Addresses []string `json:"addresses"`
	MAC       string   `json:"mac,omitempty"`
	HostIf    string   `json:"host_if"`
	Joined    bool     `json:"joined"`
	Sandbox   string   `json:"sandbox,omitempty"`
	Published []string `json:"published"` // HOSTIP:HOSTPORT->IP:PORT/PROTO
}

type admin struct{ d *Driver }

// Admin returns the Kind serving the admin methods, for the admin socket.
func (d *Driver) Admin() plugin.Kind { return admin{d} }

func (a admin) Implements() string { return AdminKind }

func (a admin) Methods() map[string]plugin.Method {
	return map[string]plugin.Method{
		MethodList: plugin.Handle(func(ctx context.Context, _ *struct{}) (*ListResponse, error) {
			return a.d.list(), nil
		}),
	}
}

func (d *Driver) list() *ListResponse {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := &ListResponse{Networks: []NetworkInfo{}}
	for _, n := range sortedNets(d.nets) {
		ni := NetworkInfo{ID: n.ID, Bridge: n.Bridge, Internal: n.Internal, ICC: n.ICC, Masquerade: n.Masquerade,
			MTU: n.MTU, Subnets: []string{}, Gateways: []string{}, Endpoints: []EndpointInfo{}}
		for _, s := range append(append([]subnet(nil), n.IPv4...), n.IPv6...) {
			ni.Subnets = append(ni.Subnets, s.Pool.String())
			if s.Gateway.IsValid() {
				ni.Gateways = append(ni.Gateways, s.Gateway.Addr().String())
			}
		}
		for _, e := range sortedEps(d.eps) {
			if e.NetworkID != n.ID {
				continue
			}
			ei := EndpointInfo{ID: e.ID, MAC: e.MAC, HostIf: e.HostIf, Joined: e.Joined, Sandbox: e.Sandbox,
				Addresses: []string{}, Published: []string{}}
			if e.Addr.IsValid() {
				ei.Addresses = append(ei.Addresses, e.Addr.String())
			}
			if e.Addr6.IsValid() {
				ei.Addresses = append(ei.Addresses, e.Addr6.String())
			}
			for _, p := range e.Ports {
				ei.Published = append(ei.Published, p.String())
			}
			ni.Endpoints = append(ni.Endpoints, ei)
		}
		out.Networks = append(out.Networks, ni)
	}
	return out
}

// AdminClient calls the admin methods of a running plugin.
type AdminClient struct{ c *plugin.Client }

// NewAdminClient wraps a plugin client.
func NewAdminClient(c *plugin.Client) *AdminClient { return &AdminClient{c} }

// List asks for every network, endpoint and published port.
func (a *AdminClient) List(ctx context.Context) (*ListResponse, error) {
	var out ListResponse
	return &out, a.c.Call(ctx, MethodList, struct{}{}, &out)
}
