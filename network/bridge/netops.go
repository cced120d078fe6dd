package bridge

import (
	"context"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/dockplug/dockplug/network"
	"github.com/dockplug/dockplug/plugin"
)

// CreateNetwork makes the network's bridge with its gateway addresses.
// Bad options, a bridge name taken by a link that is not this network's,
// or pools overlapping another network of this driver: an error, and
// nothing is created.
func (d *Driver) CreateNetwork(ctx context.Context, req *network.CreateNetworkRequest) error {
	n, err := newNetRecord(req)
	if err != nil {
		return plugin.BadRequest("%v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if old := d.nets[n.ID]; old != nil {
		// A retried call whose first answer was lost.
		return ensureBridge(d.cfg.Name, old)
	}
	for _, o := range sortedNets(d.nets) {
		if o.Bridge == n.Bridge {
			return plugin.Conflict("bridge %s is already the bridge of network %.12s", n.Bridge, o.ID)
		}
		if a, b, ok := overlaps(append(n.IPv4, n.IPv6...), append(o.IPv4, o.IPv6...)); ok {
			return plugin.Conflict("subnet %s overlaps %s of network %.12s (bridge %s)", a, b, o.ID, o.Bridge)
		}
	}
	if err := ensureBridge(d.cfg.Name, n); err != nil {
		if l, _ := linkByName(n.Bridge); l != nil && l.Attrs().Alias != netAlias(d.cfg.Name, n.ID) {
			return plugin.Conflict("%v", err) // someone else's link: leave it alone
		}
		_ = deleteLink(n.Bridge, netAlias(d.cfg.Name, n.ID))
		return err
	}
	undo := func() { _ = deleteLink(n.Bridge, netAlias(d.cfg.Name, n.ID)) }
	if err := d.update(func(tx *bbolt.Tx) error { return put(tx, bucketNetworks, n.ID, n) }); err != nil {
		undo()
		return err
	}
	d.nets[n.ID] = n
	if err := d.syncRules(); err != nil {
		delete(d.nets, n.ID)
		_ = d.update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketNetworks).Delete([]byte(n.ID)) })
		undo()
		_ = d.syncRules()
		return err
	}
	d.ipForward()
	d.log.Info("network created", "network", n.ID, "bridge", n.Bridge, "internal", n.Internal, "icc", n.ICC)
	return nil
}

func newNetRecord(req *network.CreateNetworkRequest) (*netRecord, error) {
	generic, err := network.GenericOptions(req.Options)
	if err != nil {
		return nil, err
	}
	o, err := parseNetOptions(generic)
	if err != nil {
		return nil, err
	}
	internal, _, err := network.BoolOption(req.Options, network.OptionInternal)
	if err != nil {
		return nil, err
	}
	n := &netRecord{ID: req.NetworkID, Bridge: o.Bridge, MTU: o.MTU, ICC: o.ICC, Masquerade: o.Masquerade,
		Internal: internal, HostIP: o.HostIP, IfPrefix: o.IfPrefix}
	if n.Bridge == "" {
		n.Bridge = bridgeName(req.NetworkID)
	}
	if n.IPv4, err = parsePools("IPv4Data", req.IPv4Data); err != nil {
		return nil, err
	}
	if n.IPv6, err = parsePools("IPv6Data", req.IPv6Data); err != nil {
		return nil, err
	}
	for _, s := range n.IPv4 {
		if !s.Pool.Addr().Is4() {
			return nil, fmt.Errorf("IPv4Data pool %s is not IPv4", s.Pool)
		}
	}
	for _, s := range n.IPv6 {
		if !s.Pool.Addr().Is6() {
			return nil, fmt.Errorf("IPv6Data pool %s is not IPv6", s.Pool)
		}
	}
	if len(n.IPv4)+len(n.IPv6) == 0 {
		return nil, fmt.Errorf("network %s has no address pool", req.NetworkID)
	}
	return n, nil
}

// DeleteNetwork removes the bridge (and any endpoint left on it). An
// unknown network is not an error: the daemon only logs errors here.
func (d *Driver) DeleteNetwork(ctx context.Context, req *network.DeleteNetworkRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.nets[req.NetworkID]
	if n == nil {
		return nil
	}
	var eps []*epRecord
	for _, e := range sortedEps(d.eps) {
		if e.NetworkID == n.ID {
			eps = append(eps, e)
		}
	}
	err := d.update(func(tx *bbolt.Tx) error {
		for _, e := range eps {
			if err := tx.Bucket(bucketEndpoints).Delete([]byte(e.ID)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketNetworks).Delete([]byte(n.ID))
	})
	if err != nil {
		return err
	}
	delete(d.nets, n.ID)
	var errs []error
	for _, e := range eps {
		delete(d.eps, e.ID)
		d.releasePorts(e.ID)
		if err := deleteLink(e.HostIf, epAlias(d.cfg.Name, e.ID)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteLink(n.Bridge, netAlias(d.cfg.Name, n.ID)); err != nil {
		errs = append(errs, err)
	}
	if err := d.syncRules(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		// The records are gone; the next start's reconcile removes what
		// is left.
		return fmt.Errorf("delete network %.12s: %v", n.ID, errs)
	}
	d.log.Info("network deleted", "network", n.ID, "bridge", n.Bridge)
	return nil
}
