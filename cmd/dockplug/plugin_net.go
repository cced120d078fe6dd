package main

import (
	"context"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/dockplug/dockplug/network"
	"github.com/dockplug/dockplug/network/bridge"
	"github.com/dockplug/dockplug/plugin"
)

func init() {
	var ipForward bool
	register(&pluginDef{
		Name:  "dockplug-net",
		Short: "Linux bridge networks with NAT and published ports (nftables), state in bbolt",
		Flags: func(fs *pflag.FlagSet) {
			fs.BoolVar(&ipForward, "net-ip-forward", true,
				"set net.ipv4.ip_forward=1 when a non-internal network exists, as dockerd does (never set back to 0); false: only the plugin's own bridges forward")
		},
		Open: func(ctx context.Context, env *serveEnv) (*opened, error) {
			d, err := bridge.New(ctx, bridge.Config{
				Name:      filepath.Base(env.StateDir), // the served name: <state-dir>/NAME
				StateDir:  env.StateDir,
				IPForward: ipForward,
				Logger:    env.Logger,
			})
			if err != nil {
				return nil, err
			}
			return &opened{Kinds: []plugin.Kind{network.NewHandler(d)}, Admin: []plugin.Kind{d.Admin()}, Close: d.Close}, nil
		},
	})
}
