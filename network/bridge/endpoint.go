package bridge

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	bbolt "go.etcd.io/bbolt"

	"github.com/dockplug/dockplug/network"
	"github.com/dockplug/dockplug/plugin"
)

// CreateEndpoint records the endpoint. Following the interface rule (G10)
// it answers only the MAC, and only when the daemon sent none: derived
// from the IPv4 address as docker's bridge does.
func (d *Driver) CreateEndpoint(ctx context.Context, req *network.CreateEndpointRequest) (*network.CreateEndpointResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.nets[req.NetworkID]
	if n == nil {
		return nil, plugin.NotFound("%v %.12s", errNoNetwork, req.NetworkID)
	}
	host, peer := vethNames(req.EndpointID)
	e := &epRecord{ID: req.EndpointID, NetworkID: n.ID, HostIf: host, PeerIf: peer}
	var err error
	if req.Interface.Address != "" {
		if e.Addr, err = netip.ParsePrefix(req.Interface.Address); err != nil || !inPools(n.IPv4, e.Addr.Addr()) {
			return nil, plugin.BadRequest("address %s is not in the network's IPv4 pools", req.Interface.Address)
		}
	}
	if req.Interface.AddressIPv6 != "" {
		if e.Addr6, err = netip.ParsePrefix(req.Interface.AddressIPv6); err != nil || !inPools(n.IPv6, e.Addr6.Addr()) {
			return nil, plugin.BadRequest("address %s is not in the network's IPv6 pools", req.Interface.AddressIPv6)
		}
	}
	if !e.Addr.IsValid() && !e.Addr6.IsValid() {
		return nil, plugin.BadRequest("endpoint %.12s has no address", req.EndpointID)
	}
	// Port maps are checked now so that a bad one fails before Join.
	pm, err := network.PortMapOption(req.Options)
	if err != nil {
		return nil, plugin.BadRequest("%v", err)
	}
	if _, _, err := parseBindings(pm, e.Addr.Addr(), n.HostIP); err != nil {
		return nil, plugin.BadRequest("%v", err)
	}
	resp := &network.CreateEndpointResponse{}
	switch {
	case req.Interface.MacAddress != "":
		e.MAC = req.Interface.MacAddress
	default:
		if m, err := network.MacAddressOption(req.Options); err != nil {
			return nil, plugin.BadRequest("%v", err)
		} else if m != nil {
			e.MAC = m.String() // the daemon applies it itself; we put it on the veth too
		} else if e.Addr.IsValid() {
			e.MAC = macFromIPv4(e.Addr.Addr()).String()
			resp.Interface = &network.EndpointInterface{MacAddress: e.MAC}
		}
	}
	if e.MAC != "" {
		if _, err := net.ParseMAC(e.MAC); err != nil {
			return nil, plugin.BadRequest("MAC address %q: %v", e.MAC, err)
		}
	}
	if err := d.update(func(tx *bbolt.Tx) error { return put(tx, bucketEndpoints, e.ID, e) }); err != nil {
		return nil, err
	}
	d.eps[e.ID] = e
	return resp, nil
}

func inPools(pools []subnet, a netip.Addr) bool {
	for _, s := range pools {
		if s.Pool.Contains(a) {
			return true
		}
	}
	return false
}

// EndpointOperInfo reports the endpoint's host link and published ports.
// Neither engine shows these values anywhere (not in docker inspect, network
// inspect, docker port: G11, TestNetPorts); `dockplug net ls` shows them.
func (d *Driver) EndpointOperInfo(ctx context.Context, req *network.EndpointOperInfoRequest) (*network.EndpointOperInfoResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.eps[req.EndpointID]
	if e == nil {
		return &network.EndpointOperInfoResponse{Value: map[string]any{}}, nil
	}
	ports := []string{}
	for _, p := range e.Ports {
		ports = append(ports, p.String())
	}
	return &network.EndpointOperInfoResponse{Value: map[string]any{
		"dockplug.host_if":   e.HostIf,
		"dockplug.published": ports,
	}}, nil
}

// DeleteEndpoint removes the endpoint's veth (both ends) and record; an
// unknown endpoint is not an error.
func (d *Driver) DeleteEndpoint(ctx context.Context, req *network.DeleteEndpointRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.eps[req.EndpointID]
	if e == nil {
		return nil
	}
	if err := d.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketEndpoints).Delete([]byte(e.ID)) }); err != nil {
		return err
	}
	delete(d.eps, e.ID)
	d.releasePorts(e.ID)
	var err error
	if len(e.Ports) > 0 {
		err = d.syncRules()
	}
	if lerr := deleteLink(e.HostIf, epAlias(d.cfg.Name, e.ID)); lerr != nil {
		return lerr // the record is gone: the next reconcile removes the link
	}
	return err
}

// Join makes the veth pair: the host end on the bridge, the peer (SrcName)
// left in this namespace for the daemon to move. Internal networks give no
// gateway and disable the gateway service, so no docker_gwbridge is
// attached.
func (d *Driver) Join(ctx context.Context, req *network.JoinRequest) (*network.JoinResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.nets[req.NetworkID]
	if n == nil {
		return nil, plugin.NotFound("%v %.12s", errNoNetwork, req.NetworkID)
	}
	e := d.eps[req.EndpointID]
	if e == nil || e.NetworkID != n.ID {
		return nil, plugin.NotFound("no such endpoint %.12s in network %.12s", req.EndpointID, req.NetworkID)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if l, err := linkByName(n.Bridge); err == nil && l == nil {
		// Someone deleted the bridge under the running plugin: make it
		// again rather than fail every container start until a restart.
		d.log.Warn("bridge missing at Join: recreating it", "network", n.ID, "bridge", n.Bridge)
		if err := ensureBridge(d.cfg.Name, n); err != nil {
			return nil, err
		}
		// The other containers' veths fell off with it.
		for _, o := range sortedEps(d.eps) {
			if o.NetworkID == n.ID && o.Joined && o.ID != e.ID {
				if err := repairPort(n, o); err != nil {
					d.log.Warn("re-attach veth", "endpoint", o.ID, "err", err)
				}
			}
		}
	}
	if err := makeVeth(d.cfg.Name, n, e); err != nil {
		return nil, err
	}
	upd := *e
	upd.Joined, upd.Sandbox = true, req.SandboxKey
	if err := d.update(func(tx *bbolt.Tx) error { return put(tx, bucketEndpoints, e.ID, &upd) }); err != nil {
		_ = deleteLink(e.HostIf, epAlias(d.cfg.Name, e.ID))
		return nil, err
	}
	*e = upd
	resp := &network.JoinResponse{InterfaceName: &network.InterfaceName{SrcName: e.PeerIf, DstPrefix: n.IfPrefix}}
	if n.Internal {
		resp.DisableGatewayService = true
		return resp, nil
	}
	if g := gateway(n.IPv4); g.IsValid() && e.Addr.IsValid() {
		resp.Gateway = g.String()
	}
	if g := gateway(n.IPv6); g.IsValid() && e.Addr6.IsValid() {
		resp.GatewayIPv6 = g.String()
	}
	return resp, nil
}

// Leave unpublishes the endpoint's ports. The veth stays until
// DeleteEndpoint: the daemon moves the container end back first.
func (d *Driver) Leave(ctx context.Context, req *network.LeaveRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.eps[req.EndpointID]
	if e == nil {
		return nil
	}
	if err := d.setPorts(e, nil, false); err != nil {
		return err
	}
	d.releasePorts(e.ID)
	return nil
}

// setPorts records e's published ports (and joined state) and reprograms
// the rules; on failure the old ports stay.
//
// Containers without published ports (the common case) cost no write and
// no rule rebuild here.
func (d *Driver) setPorts(e *epRecord, ports []portMap, joined bool) error {
	rulesChange := len(e.Ports) > 0 || len(ports) > 0
	if !rulesChange && e.Joined == joined {
		return nil
	}
	upd := *e
	upd.Ports, upd.Joined = ports, joined
	if err := d.update(func(tx *bbolt.Tx) error { return put(tx, bucketEndpoints, e.ID, &upd) }); err != nil {
		return err
	}
	old := *e
	*e = upd
	if !rulesChange {
		return nil
	}
	if err := d.syncRules(); err != nil {
		*e = old
		_ = d.update(func(tx *bbolt.Tx) error { return put(tx, bucketEndpoints, e.ID, &old) })
		_ = d.syncRules()
		return err
	}
	return nil
}

// ProgramExternalConnectivity publishes the sandbox's port map on the
// endpoint that became the gateway. Every host port is reserved before any
// rule changes: a taken port fails the container start and leaves nothing
// behind.
func (d *Driver) ProgramExternalConnectivity(ctx context.Context, req *network.ProgramExternalConnectivityRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.nets[req.NetworkID]
	e := d.eps[req.EndpointID]
	if n == nil || e == nil {
		return plugin.BadRequest("no such endpoint %.12s in network %.12s", req.EndpointID, req.NetworkID)
	}
	if n.Internal {
		return nil // docker publishes nothing on internal networks either
	}
	pm, err := network.PortMapOption(req.Options)
	if err != nil {
		return plugin.BadRequest("%v", err)
	}
	if len(pm) > 0 && !e.Addr.IsValid() {
		return plugin.BadRequest("cannot publish ports of an endpoint without an IPv4 address")
	}
	want, skipped, err := parseBindings(pm, e.Addr.Addr(), n.HostIP)
	if err != nil {
		return plugin.BadRequest("%v", err)
	}
	if len(skipped) > 0 {
		d.log.Info("not published (IPv4 only)", "endpoint", e.ID, "bindings", skipped)
	}
	// Keep what is already published and still wanted (a repeated call),
	// reserve the rest.
	oldRes := d.reserved[e.ID]
	used := make([]bool, len(e.Ports))
	var ports []portMap
	var res, fresh []*reservation
	fail := func(err error) error {
		for _, r := range fresh {
			r.close()
		}
		return err
	}
	for _, w := range want {
		found := false
		for i, p := range e.Ports {
			if !used[i] && p.Proto == w.Proto && p.HostIP == w.HostIP && p.Port == w.Port && p.IP == w.IP &&
				(w.HostLo == 0 || (p.HostPort >= w.HostLo && p.HostPort <= w.HostHi)) {
				used[i], found = true, true
				ports = append(ports, p)
				if i < len(oldRes) {
					res = append(res, oldRes[i])
				} else {
					res = append(res, nil)
				}
				break
			}
		}
		if found {
			continue
		}
		p, r, err := pick(w, d.rnd)
		if err != nil {
			return fail(plugin.Conflict("%v", err))
		}
		ports = append(ports, p)
		res = append(res, r)
		fresh = append(fresh, r)
	}
	if err := d.setPorts(e, ports, true); err != nil {
		return fail(err)
	}
	for i, r := range oldRes {
		if i >= len(used) || !used[i] {
			r.close()
		}
	}
	d.reserved[e.ID] = res
	if len(ports) > 0 {
		d.log.Info("ports published", "endpoint", e.ID, "ports", fmt.Sprint(ports))
	}
	return nil
}

// RevokeExternalConnectivity unpublishes the endpoint's ports.
func (d *Driver) RevokeExternalConnectivity(ctx context.Context, req *network.RevokeExternalConnectivityRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.eps[req.EndpointID]
	if e == nil {
		return nil
	}
	if err := d.setPorts(e, nil, e.Joined); err != nil {
		return err
	}
	d.releasePorts(e.ID)
	return nil
}
