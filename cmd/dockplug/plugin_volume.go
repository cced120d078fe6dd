package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/local"
)

func init() {
	var allowed []string
	register(&pluginDef{
		Name:  "dockplug-volume",
		Short: "directory volumes with crash-safe mount bookkeeping",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringSliceVar(&allowed, "volume-allowed-path", nil,
				"host directory under which 'docker volume create -o path=...' may point (repeatable); none: the path option is refused")
		},
		Open: func(ctx context.Context, env *serveEnv) (*opened, error) {
			d, err := local.New(ctx, local.Config{StateDir: env.StateDir, AllowedPaths: allowed, Logger: env.Logger})
			if err != nil {
				return nil, err
			}
			return &opened{Kinds: []plugin.Kind{volume.NewHandler(d)}, Admin: []plugin.Kind{d.Admin()}, Close: d.Close}, nil
		},
	})
}
