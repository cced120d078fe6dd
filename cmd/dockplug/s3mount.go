package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/dockplug/dockplug/volume/s3"
)

// newS3MountCmd is the per-volume mount process dockplug-s3 starts
// detached (setsid): it serves one FUSE mount and outlives the plugin.
func newS3MountCmd() *cobra.Command {
	var spec, logLevel string
	cmd := &cobra.Command{
		Use:    "s3-mount --spec FILE",
		Short:  "Serve one dockplug-s3 volume's FUSE mount (started by the plugin)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(os.Stderr, logLevel, "text")
			if err != nil {
				return err
			}
			return s3.ServeMount(cmd.Context(), spec, log.With("pid", os.Getpid()))
		},
	}
	cmd.Flags().StringVar(&spec, "spec", "", "mount spec file written by the plugin")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	_ = cmd.MarkFlagRequired("spec")
	return cmd
}
