package main

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/ipam/driver"
	"github.com/dockplug/dockplug/plugin"
)

func init() {
	var (
		hostID string
		pools  []string
	)
	register(&pluginDef{
		Name:  "dockplug-ipam",
		Short: "IPv4/IPv6 pools and addresses; local space in bbolt, global space in etcd",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&hostID, "ipam-host-id", "", "this host's ID in IPAM records and global pools (default: generated once, kept in the state dir)")
			fs.StringArrayVar(&pools, "ipam-default-pool", nil,
				"dynamic local pool as base=CIDR,size=N, like dockerd's --default-address-pool (repeatable; default: docker's defaults and a ULA /48 split in /64s)")
		},
		Open: func(ctx context.Context, env *serveEnv) ([]plugin.Kind, func() error, error) {
			specs, err := parsePoolSpecs(pools)
			if err != nil {
				return nil, nil, err
			}
			d, err := driver.New(driver.Config{StateDir: env.StateDir, HostID: hostID, DefaultPools: specs, Logger: env.Logger})
			if err != nil {
				return nil, nil, err
			}
			return []plugin.Kind{ipam.NewHandler(d), d.Admin()}, d.Close, nil
		},
	})
}

// parsePoolSpecs parses base=CIDR,size=N entries.
func parsePoolSpecs(in []string) ([]alloc.PoolSpec, error) {
	var out []alloc.PoolSpec
	for _, s := range in {
		var spec alloc.PoolSpec
		var haveBase, haveSize bool
		for _, kv := range strings.Split(s, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			switch k {
			case "base":
				p, err := netip.ParsePrefix(v)
				if err != nil {
					return nil, fmt.Errorf("--ipam-default-pool %q: base: %v", s, err)
				}
				spec.Base, haveBase = p.Masked(), true
			case "size":
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("--ipam-default-pool %q: size: %v", s, err)
				}
				spec.Size, haveSize = n, true
			default:
				return nil, fmt.Errorf("--ipam-default-pool %q: unknown key %q (want base=CIDR,size=N)", s, k)
			}
		}
		if !haveBase || !haveSize || spec.Size < spec.Base.Bits() || spec.Size > spec.Base.Addr().BitLen() {
			return nil, fmt.Errorf("--ipam-default-pool %q: want base=CIDR,size=N with N between the base's prefix length and %d", s, spec.Base.Addr().BitLen())
		}
		out = append(out, spec)
	}
	return out, nil
}
