package driver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store/bolt"
)

// Config configures the IPAM driver.
type Config struct {
	// StateDir holds state.db and host-id.
	StateDir string
	// HostID names this host in the records and in global pools; empty:
	// the ID kept in StateDir/host-id, generated on first start.
	HostID string
	// DefaultPools are the local space's dynamic pools; nil: docker's
	// defaults. As dockerd does with default-address-pools, pools given
	// replace docker's defaults, and if none of them is IPv6, a ULA /48
	// derived from the host ID, split in /64s, is added: giving IPv4 pools
	// keeps the IPv6 default. IPv4-mapped IPv6 pools are refused.
	DefaultPools []alloc.PoolSpec
	// Global serves the global address space; nil: global requests fail
	// with a clear error (never a silent local fallback).
	Global Space
	// HostRoutes lists prefixes dynamic local pools must avoid; nil:
	// this host's routes.
	HostRoutes func() ([]netip.Prefix, error)
	Logger     *slog.Logger
}

// Driver implements ipam.Driver.
type Driver struct {
	cfg    Config
	db     *bbolt.DB
	local  *localSpace
	global Space
	log    *slog.Logger
}

var _ ipam.Driver = (*Driver)(nil)

// New opens the state and loads every pool.
func New(cfg Config) (*Driver, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("ipam: no state dir")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HostRoutes == nil {
		cfg.HostRoutes = HostRoutes
	}
	if cfg.HostID == "" {
		id, err := LoadHostID(cfg.StateDir)
		if err != nil {
			return nil, err
		}
		cfg.HostID = id
	}
	if cfg.DefaultPools == nil {
		cfg.DefaultPools = alloc.DockerDefaultPools()
	}
	if !slices.ContainsFunc(cfg.DefaultPools, func(p alloc.PoolSpec) bool { return p.Base.Addr().Is6() }) {
		cfg.DefaultPools = append(slices.Clip(cfg.DefaultPools), alloc.DeriveULAPool(cfg.HostID))
	}
	db, err := bolt.Open(filepath.Join(cfg.StateDir, "state.db"))
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	local, err := newLocalSpace(db, LocalSpace, cfg.HostID, cfg.DefaultPools)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ipam: %w", err)
	}
	return &Driver{cfg: cfg, db: db, local: local, global: cfg.Global, log: cfg.Logger}, nil
}

// HostID is the ID this driver records as the holder of its allocations.
func (d *Driver) HostID() string { return d.cfg.HostID }

// Close releases the state file and the global store.
func (d *Driver) Close() error {
	var errs []error
	if d.global != nil {
		errs = append(errs, d.global.Close())
	}
	errs = append(errs, d.db.Close())
	return errors.Join(errs...)
}

func (d *Driver) space(name string) (Space, error) {
	switch name {
	case LocalSpace:
		return d.local, nil
	case GlobalSpace:
		if d.global == nil {
			return nil, plugin.Errorf(501, "the global address space needs a shared store: start the plugin with --etcd-endpoints")
		}
		return d.global, nil
	}
	return nil, plugin.BadRequest("unknown address space %q: this plugin serves %q and %q", name, LocalSpace, GlobalSpace)
}

// GetCapabilities: state is ours and durable, so no replay is needed.
func (d *Driver) GetCapabilities(ctx context.Context) (*ipam.CapabilitiesResponse, error) {
	return &ipam.CapabilitiesResponse{RequiresRequestReplay: false}, nil
}

// GetDefaultAddressSpaces names the two spaces.
func (d *Driver) GetDefaultAddressSpaces(ctx context.Context) (*ipam.AddressSpacesResponse, error) {
	return &ipam.AddressSpacesResponse{LocalDefaultAddressSpace: LocalSpace, GlobalDefaultAddressSpace: GlobalSpace}, nil
}

// RequestPool allocates an explicit or dynamic pool.
func (d *Driver) RequestPool(ctx context.Context, req *ipam.RequestPoolRequest) (*ipam.RequestPoolResponse, error) {
	sp, err := d.space(req.AddressSpace)
	if err != nil {
		return nil, err
	}
	pr := PoolRequest{V6: req.V6, Options: req.Options}
	if req.Pool != "" {
		if pr.Pool, err = netip.ParsePrefix(req.Pool); err != nil {
			return nil, plugin.BadRequest("pool %q: %v", req.Pool, err)
		}
		if pr.Pool.Addr().Is6() != req.V6 {
			return nil, plugin.BadRequest("pool %s is not an IPv%s pool", req.Pool, map[bool]string{true: "6", false: "4"}[req.V6])
		}
		pr.Pool = pr.Pool.Masked()
		if pr.Pool.Addr().IsUnspecified() {
			// As in docker's default IPAM: 0.0.0.0/N or ::/N asks for any
			// pool of prefix length N (0: of the default pools' sizes).
			pr.Size, pr.Pool = pr.Pool.Bits(), netip.Prefix{}
		}
	}
	if req.SubPool != "" {
		if !pr.Pool.IsValid() {
			return nil, plugin.BadRequest("sub-pool %s: a sub-pool needs a pool (give a subnet with the IP range)", req.SubPool)
		}
		if pr.SubPool, err = netip.ParsePrefix(req.SubPool); err != nil {
			return nil, plugin.BadRequest("sub-pool %q: %v", req.SubPool, err)
		}
		pr.SubPool = pr.SubPool.Masked()
	}
	if !pr.Pool.IsValid() && req.AddressSpace == LocalSpace {
		routes, err := d.cfg.HostRoutes()
		if err != nil {
			return nil, fmt.Errorf("read host routes: %w", err)
		}
		for _, r := range routes {
			if r.Bits() > 0 { // a default route overlaps everything
				pr.Exclude = append(pr.Exclude, r)
			}
		}
	}
	info, err := sp.RequestPool(ctx, pr)
	if err != nil {
		return nil, err
	}
	d.log.Debug("pool allocated", "pool", info.ID)
	return &ipam.RequestPoolResponse{PoolID: info.ID, Pool: info.Pool.String()}, nil
}

// ReleasePool frees a pool and every address in it.
func (d *Driver) ReleasePool(ctx context.Context, req *ipam.ReleasePoolRequest) error {
	sp, err := d.space(spaceOf(req.PoolID))
	if err != nil {
		return err
	}
	return sp.ReleasePool(ctx, req.PoolID)
}

// RequestAddress allocates an address; the answer is in CIDR form.
func (d *Driver) RequestAddress(ctx context.Context, req *ipam.RequestAddressRequest) (*ipam.RequestAddressResponse, error) {
	sp, err := d.space(spaceOf(req.PoolID))
	if err != nil {
		return nil, err
	}
	ar := AddrRequest{PoolID: req.PoolID, Gateway: req.IsGateway(),
		Serial: req.Options[ipam.OptSerial] == "true", Endpoint: req.Options[ipam.OptEndpointName], MAC: req.Options[ipam.OptMACAddress]}
	if req.Address != "" {
		if ar.Address, err = netip.ParseAddr(req.Address); err != nil {
			return nil, plugin.BadRequest("address %q: %v", req.Address, err)
		}
	}
	addr, err := sp.RequestAddress(ctx, ar)
	if err != nil {
		return nil, err
	}
	bits, err := poolBits(req.PoolID)
	if err != nil {
		return nil, err
	}
	return &ipam.RequestAddressResponse{Address: netip.PrefixFrom(addr, bits).String()}, nil
}

// poolBits is the prefix length of a pool, read from its ID
// ("space/addr/bits[/sub/bits]").
func poolBits(poolID string) (int, error) {
	parts := strings.SplitN(poolID, "/", 4)
	if len(parts) >= 3 {
		if p, err := netip.ParsePrefix(parts[1] + "/" + parts[2]); err == nil {
			return p.Bits(), nil
		}
	}
	return 0, fmt.Errorf("malformed pool ID %q", poolID)
}

// ReleaseAddress frees an address; unknown addresses are harmless.
func (d *Driver) ReleaseAddress(ctx context.Context, req *ipam.ReleaseAddressRequest) error {
	sp, err := d.space(spaceOf(req.PoolID))
	if err != nil {
		return err
	}
	if req.Address == "" {
		return nil
	}
	addr, err := netip.ParseAddr(req.Address)
	if err != nil {
		return plugin.BadRequest("address %q: %v", req.Address, err)
	}
	return sp.ReleaseAddress(ctx, req.PoolID, addr)
}

// Pools lists the pools of both spaces.
func (d *Driver) Pools(ctx context.Context) ([]PoolInfo, error) {
	out, err := d.local.Pools(ctx)
	if err != nil || d.global == nil {
		return out, err
	}
	g, err := d.global.Pools(ctx)
	return append(out, g...), err
}

// Collect frees what is provably unused in the global space (see
// Collector); the local space frees everything at once and has nothing to
// collect.
func (d *Driver) Collect(ctx context.Context, apply bool) ([]GCBlock, error) {
	c, ok := d.global.(Collector)
	if !ok {
		return nil, plugin.Errorf(501, "nothing to collect: the global address space needs a shared store (start the plugin with --etcd-endpoints); the local space frees everything at once")
	}
	return c.Collect(ctx, apply)
}

// Pool returns one pool, found by ID or by its CIDR, and its addresses.
func (d *Driver) Pool(ctx context.Context, ref string) (*PoolInfo, []AddrInfo, error) {
	pools, err := d.Pools(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range pools {
		if p.ID == ref || p.Pool.String() == ref {
			sp, err := d.space(p.Space)
			if err != nil {
				return nil, nil, err
			}
			addrs, err := sp.Addresses(ctx, p.ID)
			return &p, addrs, err
		}
	}
	return nil, nil, plugin.NotFound("no pool %q (give a pool ID or CIDR from 'dockplug ipam ls')", ref)
}
