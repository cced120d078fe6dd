package main

import (
	"context"
	"errors"

	"github.com/spf13/pflag"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/s3"
)

func init() {
	var configFile string
	register(&pluginDef{
		Name:     "dockplug-s3",
		Short:    "S3 bucket prefixes as volumes, through FUSE (one mount process per volume)",
		External: true,
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&configFile, "s3-config", "", "YAML file (mode 0600) of S3 profiles and allow-buckets for dockplug-s3")
		},
		Open: func(ctx context.Context, env *serveEnv) (*opened, error) {
			if configFile == "" {
				return nil, errors.New("dockplug-s3 needs --s3-config FILE (profiles and allow-buckets)")
			}
			cfg, err := s3.LoadConfig(configFile)
			if err != nil {
				return nil, err
			}
			d, err := s3.New(ctx, s3.DriverConfig{Config: cfg, StateDir: env.StateDir, Logger: env.Logger})
			if err != nil {
				return nil, err
			}
			return &opened{Kinds: []plugin.Kind{volume.NewHandler(d)}, Close: d.Close}, nil
		},
	})
}
