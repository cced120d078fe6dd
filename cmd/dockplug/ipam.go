package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dockplug/dockplug/ipam/driver"
	"github.com/dockplug/dockplug/plugin"
)

func newIpamCmd() *cobra.Command {
	var (
		stateDir string
		name     string
		asJSON   bool
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "Show the pools and addresses of a running dockplug-ipam",
		Long: `Ask the running IPAM plugin (on its admin socket, <state-dir>/NAME/admin.sock:
its state file admits one process) which pools it holds, and which endpoint
on which host holds each address.`,
	}
	adminFlags(cmd, &stateDir, &name, "dockplug-ipam")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the plugin")
	connect := func() (*driver.AdminClient, func(), error) {
		c, err := adminPlugin(stateDir, name)
		if err != nil {
			return nil, nil, err
		}
		return driver.NewAdminClient(c), c.Close, nil
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List pools",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			ac, done, err := connect()
			if err != nil {
				return err
			}
			defer done()
			res, err := ac.Pools(ctx)
			if err != nil {
				return fmt.Errorf("ask %s: %w", name, err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POOL ID\tSPACE\tPOOL\tSUBPOOL\tGATEWAY\tALLOCATED\tHOSTS")
			for _, p := range res.Pools {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", p.ID, p.Space, p.Pool, orDash(p.SubPool.String(), p.SubPool.IsValid()),
					orDash(p.Gateway.String(), p.Gateway.IsValid()), p.Allocated, orDash(fmt.Sprint(p.Hosts), len(p.Hosts) > 0))
			}
			return tw.Flush()
		},
	}
	show := &cobra.Command{
		Use:   "show POOL",
		Short: "Show a pool (by ID or CIDR) and who holds each address",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			ac, done, err := connect()
			if err != nil {
				return err
			}
			defer done()
			res, err := ac.Pool(ctx, args[0])
			if err != nil {
				return fmt.Errorf("ask %s: %w", name, err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Pool %s (%s space), %d allocated\n", res.Pool.Pool, res.Pool.Space, res.Pool.Allocated)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tENDPOINT\tHOST\tSINCE")
			for _, a := range res.Addresses {
				ep := a.Endpoint
				if a.Gateway {
					ep = "(gateway)"
				}
				if a.Aux {
					ep = "(aux)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Address, orDash(ep, ep != ""), a.Host, a.At.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	var apply bool
	gc := &cobra.Command{
		Use:   "gc",
		Short: "Free the blocks of the global space that are provably unused (dry run unless --apply)",
		Long: `List the address blocks of the global space claimed by hosts whose lease
expired (hosts gone: their plugin stopped or lost etcd for longer than its
--ipam-host-ttl) and, with --apply, free those in which no address is
allocated. Blocks in which addresses are allocated are kept and listed:
only their holders can release those addresses.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			ac, done, err := connect()
			if err != nil {
				return err
			}
			defer done()
			res, err := ac.GC(ctx, apply)
			if err != nil {
				return fmt.Errorf("ask %s: %w", name, err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POOL\tBLOCK\tHOST\tADDRESSES\tACTION\tREASON")
			free := 0
			for _, b := range res.Blocks {
				action := "keep"
				switch {
				case b.Freed:
					action, free = "freed", free+1
				case b.Addresses == 0 && !apply:
					action, free = "would free", free+1
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", b.Pool, b.Block, b.Host, b.Addresses, action, b.Reason)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			switch {
			case apply:
				fmt.Fprintf(w, "%d blocks freed\n", free)
			default:
				fmt.Fprintf(w, "%d blocks would be freed; run with --apply to free them\n", free)
			}
			return nil
		},
	}
	gc.Flags().BoolVar(&apply, "apply", false, "free the unused blocks (default: only list them)")
	cmd.AddCommand(ls, show, gc)
	return cmd
}

// adminFlags adds the flags that find a running plugin's admin socket:
// --state-dir, as given to `dockplug serve` (default: $DOCKPLUG_STATE_DIR,
// else serve's default), and --name.
func adminFlags(cmd *cobra.Command, stateDir, name *string, defName string) {
	def := defaultStateDir
	if v := os.Getenv("DOCKPLUG_STATE_DIR"); v != "" {
		def = v
	}
	cmd.PersistentFlags().StringVar(stateDir, "state-dir", def, "the plugin's --state-dir (default: $DOCKPLUG_STATE_DIR, else "+defaultStateDir+"); its admin socket is <state-dir>/NAME/"+adminSocketName)
	cmd.PersistentFlags().StringVar(name, "name", defName, "plugin name")
}

// adminPlugin is a client for the admin socket of a plugin served on this
// host, without the daemon's retries: a plugin that is not running fails
// at once.
func adminPlugin(stateDir, name string) (*plugin.Client, error) {
	path := adminSocketPath(stateDir, name)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no admin socket %s: is %s running with --state-dir %s?", path, name, stateDir)
	}
	return plugin.NewClient("unix://"+path, plugin.WithBackoff(plugin.Backoff{}))
}

func orDash(s string, ok bool) string {
	if !ok {
		return "-"
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
