package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dockplug/dockplug/volume/local"
)

func newVolumeCmd() *cobra.Command {
	var (
		stateDir string
		name     string
		asJSON   bool
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Show and clear the mount references of a running dockplug-volume",
		Long: `Ask the running volume plugin (on its admin socket, <state-dir>/NAME/admin.sock)
which mount IDs hold a volume, and release a reference the daemon will never
release: one recorded by a Mount whose answer was lost when the plugin died.
Releasing the last reference unmounts the volume.`,
	}
	adminFlags(cmd, &stateDir, &name, "dockplug-volume")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the plugin")
	run := func(cmd *cobra.Command, call func(context.Context, *local.AdminClient) (*local.RefsResponse, error)) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		c, err := adminPlugin(stateDir, name)
		if err != nil {
			return err
		}
		defer c.Close()
		res, err := call(ctx, local.NewAdminClient(c))
		if err != nil {
			return fmt.Errorf("ask %s: %w", name, err)
		}
		if asJSON {
			return writeJSON(cmd.OutOrStdout(), res)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Volume %s at %s\n", res.Name, res.Mountpoint)
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MOUNT ID\tCOUNT")
		ids := make([]string, 0, len(res.Refs))
		for id := range res.Refs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			fmt.Fprintf(tw, "%s\t%d\n", id, res.Refs[id])
		}
		return tw.Flush()
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "refs VOLUME",
		Short: "List a volume's mount references (mount ID and count)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, func(ctx context.Context, a *local.AdminClient) (*local.RefsResponse, error) {
				return a.Refs(ctx, args[0])
			})
		},
	}, &cobra.Command{
		Use:   "release VOLUME MOUNT-ID",
		Short: "Drop one reference, as the daemon's Unmount would",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, func(ctx context.Context, a *local.AdminClient) (*local.RefsResponse, error) {
				return a.Release(ctx, args[0], args[1])
			})
		},
	})
	return cmd
}
