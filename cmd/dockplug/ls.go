package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dockplug/dockplug/plugin"
)

type lsEntry struct {
	Name       string   `json:"name"`
	Addr       string   `json:"addr"`
	Source     string   `json:"source"`
	Implements []string `json:"implements,omitempty"`
	Error      string   `json:"error,omitempty"`
}

func newLsCmd() *cobra.Command {
	var (
		socketDir string
		specDirs  []string
		timeout   time.Duration
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the plugins the Docker daemon can discover on this host",
		Long: `List every legacy plugin the daemon would find (sockets in the socket dir,
.spec and .json files in the spec dirs), activate each, and show the kinds it
implements. A plugin that does not answer within --timeout is shown as
unreachable: a stale socket does not stall the listing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg := &plugin.Registry{SocketDir: socketDir, SpecDirs: specDirs}
			entries, scanErrs := listPlugins(cmd.Context(), reg, timeout)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if entries == nil {
					entries = []lsEntry{}
				}
				if err := enc.Encode(entries); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tADDRESS\tIMPLEMENTS")
				for _, e := range entries {
					impl := strings.Join(e.Implements, ",")
					if e.Error != "" {
						impl = "unreachable: " + e.Error
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Name, e.Addr, impl)
				}
				tw.Flush()
			}
			for _, err := range scanErrs {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&socketDir, "socket-dir", plugin.DefaultSocketDir, "socket directory")
	f.StringSliceVar(&specDirs, "spec-dir", []string{plugin.DefaultSpecDir, plugin.LibSpecDir}, "spec directories, in lookup order")
	f.DurationVar(&timeout, "timeout", 2*time.Second, "how long to wait for each plugin to answer Plugin.Activate")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// listPlugins activates every discovered plugin in parallel, each bounded by
// timeout and without the daemon's 15 s of retries.
func listPlugins(ctx context.Context, reg *plugin.Registry, timeout time.Duration) ([]lsEntry, []error) {
	found, errs := reg.Scan()
	entries := make([]lsEntry, len(found))
	var wg sync.WaitGroup
	for i, f := range found {
		entries[i] = lsEntry{Name: f.Name, Addr: f.Addr, Source: f.Source}
		wg.Go(func() {
			c, err := f.Client(plugin.WithBackoff(plugin.Backoff{}))
			if err != nil {
				entries[i].Error = err.Error()
				return
			}
			defer c.Close()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			m, err := c.Activate(cctx)
			if err != nil {
				entries[i].Error = err.Error()
				return
			}
			entries[i].Implements = m.Implements
		})
	}
	wg.Wait()
	return entries, errs
}
