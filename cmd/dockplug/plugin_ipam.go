package main

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/ipam/driver"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store/etcd"
)

func init() {
	var (
		hostID                    string
		pools                     []string
		etcdEndpoints             []string
		etcdCert, etcdKey, etcdCA string
		hostTTL                   time.Duration
	)
	register(&pluginDef{
		Name:  "dockplug-ipam",
		Short: "IPv4/IPv6 pools and addresses; local space in bbolt, global space in etcd",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&hostID, "ipam-host-id", "", "this host's ID in IPAM records and global pools (default: generated once, kept in the state dir)")
			fs.StringArrayVar(&pools, "ipam-default-pool", nil,
				"dynamic local pool as base=CIDR,size=N, like dockerd's --default-address-pool (repeatable; default: docker's defaults; unless an IPv6 pool is given, a ULA /48 split in /64s is added)")
			fs.StringSliceVar(&etcdEndpoints, "etcd-endpoints", nil, "etcd endpoints (e.g. https://10.0.0.5:2379) for the global address space, shared by several hosts; none: global requests are refused")
			fs.StringVar(&etcdCert, "etcd-cert", "", "client certificate for etcd (mutual TLS)")
			fs.StringVar(&etcdKey, "etcd-key", "", "client key for etcd")
			fs.StringVar(&etcdCA, "etcd-ca", "", "CA that signed etcd's server certificate (default: system roots)")
			fs.DurationVar(&hostTTL, "ipam-host-ttl", driver.DefaultHostTTL, "lease of this host's key in etcd: the empty blocks of a host whose lease expired may be freed ('dockplug ipam gc')")
		},
		Open: func(ctx context.Context, env *serveEnv) (*opened, error) {
			specs, err := parsePoolSpecs(pools)
			if err != nil {
				return nil, err
			}
			id := hostID
			if id == "" {
				if id, err = driver.LoadHostID(env.StateDir); err != nil {
					return nil, err
				}
			}
			var global driver.Space
			if len(etcdEndpoints) > 0 {
				var opts []etcd.Option
				if etcdCert != "" || etcdKey != "" || etcdCA != "" {
					opts = append(opts, etcd.WithTLS(etcdCert, etcdKey, etcdCA))
				}
				cli, err := etcd.Dial(ctx, etcdEndpoints, opts...)
				if err != nil {
					return nil, fmt.Errorf("global address space: %w", err)
				}
				if global, err = driver.NewGlobalSpace(ctx, driver.GlobalConfig{Client: cli, HostID: id, HostTTL: hostTTL, Logger: env.Logger}); err != nil {
					cli.Close()
					return nil, err
				}
			}
			d, err := driver.New(driver.Config{StateDir: env.StateDir, HostID: id, DefaultPools: specs, Global: global, Logger: env.Logger})
			if err != nil {
				if global != nil {
					global.Close()
				}
				return nil, err
			}
			return &opened{Kinds: []plugin.Kind{ipam.NewHandler(d)}, Admin: []plugin.Kind{d.Admin()}, Close: d.Close}, nil
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
				if p.Addr().Is4In6() {
					return nil, fmt.Errorf("--ipam-default-pool %q: base %s is an IPv4-mapped IPv6 prefix; give IPv4 pools in IPv4 form", s, p)
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
