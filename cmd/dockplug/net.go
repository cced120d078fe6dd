package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dockplug/dockplug/network/bridge"
)

func newNetCmd() *cobra.Command {
	var (
		stateDir string
		name     string
		asJSON   bool
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "net",
		Short: "Show the networks of a running dockplug-net",
	}
	adminFlags(cmd, &stateDir, &name, "dockplug-net")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the plugin")
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List networks (bridge, subnets), endpoints and published ports",
		Long: `Ask the running network plugin (on its admin socket, <state-dir>/NAME/admin.sock)
what it holds. Published
ports are listed here because the daemon never shows a remote driver's port
mappings in docker ps or docker port (G11), random host ports included.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c, err := adminPlugin(stateDir, name)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := bridge.NewAdminClient(c).List(ctx)
			if err != nil {
				return fmt.Errorf("ask %s: %w", name, err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NETWORK\tBRIDGE\tSUBNETS\tFLAGS\tENDPOINT\tADDRESSES\tPUBLISHED")
			for _, n := range res.Networks {
				var flags []string
				if n.Internal {
					flags = append(flags, "internal")
				}
				if !n.ICC {
					flags = append(flags, "icc=false")
				}
				if !n.Masquerade {
					flags = append(flags, "masquerade=false")
				}
				row := fmt.Sprintf("%.12s\t%s\t%s\t%s", n.ID, n.Bridge, strings.Join(n.Subnets, ","), dash(strings.Join(flags, ",")))
				if len(n.Endpoints) == 0 {
					fmt.Fprintf(tw, "%s\t-\t-\t-\n", row)
				}
				for _, e := range n.Endpoints {
					fmt.Fprintf(tw, "%s\t%.12s\t%s\t%s\n", row, e.ID, strings.Join(e.Addresses, ","), dash(strings.Join(e.Published, ",")))
					row = "\t\t\t"
				}
			}
			return tw.Flush()
		},
	})
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
