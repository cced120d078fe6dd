package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// version is set at link time (-ldflags "-X main.version=..."); otherwise
// it comes from the module build info.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		return v
	}
	return "unknown"
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "dockplug",
		Short: "Serve and inspect Docker Engine plugins",
		Long: `dockplug serves Docker Engine plugins (` + pluginNames() + `)
on unix sockets in /run/docker/plugins or over TCP, lists the plugins a
daemon can discover, shows the pools and addresses a running dockplug-ipam
holds, shows or releases the mount references of a running
dockplug-volume, and lints and tries dockplug-authz policies.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCmd(), newServeCmd(), newLsCmd(), newIpamCmd(), newVolumeCmd(), newAuthzCmd(), newAuthzProxyCmd(), newNetCmd())
	return root
}

// pluginNames lists the catalogue: the plugins `dockplug serve` knows.
func pluginNames() string {
	names := make([]string, len(catalogue))
	for i, d := range catalogue {
		names[i] = d.Name
	}
	return strings.Join(names, ", ")
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the dockplug version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "dockplug", versionString())
		},
	}
}

// applyConfig fills every flag the user did not set on the command line from
// DOCKPLUG_<FLAG_NAME> in the environment, else from the YAML config file
// (keys are flag names). Precedence: flag > environment > file > default.
func applyConfig(fs *pflag.FlagSet, configPath string) error {
	var file map[string]any
	if configPath != "" {
		data, err := os.ReadFile(configPath)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if err := yaml.Unmarshal(data, &file); err != nil {
			return fmt.Errorf("config %s: %w", configPath, err)
		}
		for k := range file {
			if f := fs.Lookup(k); f == nil || k == "config" {
				return fmt.Errorf("config %s: unknown setting %q (settings are the flag names of this command)", configPath, k)
			}
		}
	}
	var errs []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		env := "DOCKPLUG_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			// One Set: a slice flag parses its own comma list, and an
			// array flag (base=..,size=..) must not be split.
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", env, err))
			}
			return
		}
		v, ok := file[f.Name]
		if !ok {
			return
		}
		var vals []string
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				vals = append(vals, fmt.Sprint(e))
			}
		default:
			vals = []string{fmt.Sprint(v)}
		}
		if err := setFlag(f, vals...); err != nil {
			errs = append(errs, fmt.Sprintf("config %s: %s: %v", configPath, f.Name, err))
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func setFlag(f *pflag.Flag, vals ...string) error {
	if _, isSlice := f.Value.(pflag.SliceValue); !isSlice {
		vals = []string{strings.Join(vals, ",")}
	}
	for _, v := range vals {
		if err := f.Value.Set(v); err != nil {
			return err
		}
	}
	return nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
