package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"

	bbolt "go.etcd.io/bbolt"

	"github.com/dockplug/dockplug/network"
	"github.com/dockplug/dockplug/store/bolt"
)

// Config configures a Driver.
type Config struct {
	// Name is the plugin instance's name (e.g. "dockplug-net"). It names
	// the nftables table and tags the links the instance owns, so several
	// instances on one host never touch each other's.
	Name string
	// StateDir holds state.db.
	StateDir string
	// IPForward lets the driver set net.ipv4.ip_forward=1 when a
	// non-internal network exists, as dockerd does: without it, traffic of
	// other hosts (replies to outbound traffic, published ports) is not
	// forwarded to the containers. The driver never sets it back to 0: it
	// cannot know who else relies on it. Forwarding on its own bridges
	// (net.ipv4.conf.BRIDGE.forwarding) is always set; it goes away with
	// the bridge.
	IPForward bool
	Logger    *slog.Logger
}

// Driver is dockplug-net. It implements network.Driver and
// network.ExternalConnectivity.
type Driver struct {
	cfg Config
	log *slog.Logger
	db  *bbolt.DB

	mu       sync.Mutex
	nets     map[string]*netRecord
	eps      map[string]*epRecord
	reserved map[string][]*reservation // endpoint ID -> its host port sockets, in Ports order
	rnd      *rand.Rand
}

var (
	_ network.Driver               = (*Driver)(nil)
	_ network.ExternalConnectivity = (*Driver)(nil)
)

// New opens the state and reconciles the kernel with it.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.Name == "" || strings.ContainsAny(cfg.Name, ": ") {
		return nil, fmt.Errorf("bridge: bad instance name %q", cfg.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(filepath.Join(cfg.StateDir, "state.db"), string(bucketNetworks), string(bucketEndpoints))
	if err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, log: cfg.Logger, db: db, reserved: map[string][]*reservation{},
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	if d.nets, d.eps, err = loadAll(db); err != nil {
		db.Close()
		return nil, err
	}
	if err := d.reconcile(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Close releases the host port sockets and the state file. Links and rules
// stay: the data plane outlives the plugin.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, rs := range d.reserved {
		for _, r := range rs {
			r.close()
		}
		delete(d.reserved, id)
	}
	return d.db.Close()
}

// reconcile makes the kernel match the records (see doc.go).
func (d *Driver) reconcile(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range sortedNets(d.nets) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := ensureBridge(d.cfg.Name, n); err != nil {
			d.log.Error("reconcile: network", "network", n.ID, "err", err)
		}
	}
	links, err := ourLinks(d.cfg.Name)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	present := map[string]bool{}
	for name, ki := range links {
		kind, id := ki[0], ki[1]
		present[name] = true
		known := (kind == "net" && d.nets[id] != nil && d.nets[id].Bridge == name) ||
			(kind == "ep" && d.eps[id] != nil && d.eps[id].HostIf == name)
		if known {
			continue
		}
		alias := netAlias(d.cfg.Name, id)
		if kind == "ep" {
			alias = epAlias(d.cfg.Name, id)
		}
		d.log.Info("reconcile: deleting a link of ours that no record claims", "link", name)
		if err := deleteLink(name, alias); err != nil {
			d.log.Error("reconcile", "link", name, "err", err)
		}
	}
	for _, e := range sortedEps(d.eps) {
		n := d.nets[e.NetworkID]
		if n == nil || !e.Joined {
			continue
		}
		if !present[e.HostIf] {
			// The container's network namespace went away while the
			// plugin was down (taking the veth with it), so the daemon's
			// Leave never arrived: unpublish. The record stays for the
			// DeleteEndpoint the daemon sends when it cleans up (G9).
			d.log.Warn("reconcile: a joined endpoint's veth is gone (its container went with it): unpublishing its ports", "endpoint", e.ID, "link", e.HostIf)
			upd := *e
			upd.Joined, upd.Ports = false, nil
			if err := d.update(func(tx *bbolt.Tx) error { return put(tx, bucketEndpoints, e.ID, &upd) }); err != nil {
				return fmt.Errorf("reconcile: %w", err)
			}
			*e = upd
			continue
		}
		if err := repairPort(n, e); err != nil {
			d.log.Error("reconcile: endpoint", "endpoint", e.ID, "err", err)
		}
		var rs []*reservation
		for _, p := range e.Ports {
			r, err := reserve(p.Proto, p.HostIP, p.HostPort)
			if err != nil {
				d.log.Warn("reconcile: cannot reserve a published host port again; the DNAT rule still wins for traffic from outside", "port", p.String(), "err", bindError(p.Proto, p.HostIP, p.HostPort, err))
			}
			rs = append(rs, r)
		}
		d.reserved[e.ID] = rs
	}
	if err := d.syncRules(); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	d.ipForward()
	return nil
}

// syncRules replaces the nftables table with what the records call for;
// with no network left the table is deleted.
func (d *Driver) syncRules() error {
	if len(d.nets) == 0 {
		return deleteTable(d.cfg.Name)
	}
	return applyRules(d.cfg.Name, buildRules(d.nets, d.eps))
}

// ipForward turns on net.ipv4.ip_forward if allowed and a non-internal
// network exists.
func (d *Driver) ipForward() {
	if !d.cfg.IPForward {
		return
	}
	need := false
	for _, n := range d.nets {
		need = need || !n.Internal
	}
	if !need {
		return
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return
	}
	if err := writeSysctl("ipv4/ip_forward", "1"); err != nil {
		d.log.Error("cannot enable IPv4 forwarding; outbound traffic and published ports will not work from other hosts", "err", err)
		return
	}
	d.log.Info("enabled net.ipv4.ip_forward (it is never turned off again by dockplug-net)")
}

// update writes records (nil value: delete) durably.
func (d *Driver) update(fn func(tx *bbolt.Tx) error) error {
	if err := d.db.Update(fn); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func (d *Driver) releasePorts(epID string) {
	for _, r := range d.reserved[epID] {
		r.close()
	}
	delete(d.reserved, epID)
}

// GetCapabilities: local scope.
func (d *Driver) GetCapabilities(context.Context) (*network.Capabilities, error) {
	return &network.Capabilities{Scope: network.ScopeLocal, ConnectivityScope: network.ScopeLocal}, nil
}

var errNoNetwork = errors.New("no such network")
