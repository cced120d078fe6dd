package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/authz/policy"
	"github.com/dockplug/dockplug/plugin"
)

func init() {
	var policyFile, auditFile string
	register(&pluginDef{
		Name:  "dockplug-authz",
		OptIn: true,
		Short: "authorization: CEL policies over what the daemon will really do; fails closed",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&policyFile, "authz-policy", "", "policy file (YAML); reloaded on SIGHUP and when it changes. Missing or broken: every request is denied")
			fs.StringVar(&auditFile, "authz-audit", "", "append one JSON line per decision to this file (default: stderr)")
		},
		Open: func(ctx context.Context, env *serveEnv) (*opened, error) {
			var audit io.Writer = os.Stderr
			var auditCloser io.Closer
			if auditFile != "" {
				f, err := os.OpenFile(auditFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
				if err != nil {
					return nil, fmt.Errorf("--authz-audit: %w", err)
				}
				audit, auditCloser = f, f
			}
			m := policy.NewMetrics(env.Metrics)
			// A policy that does not load is not an error: the plugin must
			// run (dockerd cannot start without it) and deny everything.
			e := policy.NewEngine(policyFile, env.Logger)
			e.OnReload = m.Reloaded
			m.Reloaded(e.Err() == nil)
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			ctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := e.Watch(ctx, hup); err != nil {
					env.Logger.Error("policy watch stopped; SIGHUP and file changes are no longer seen", "err", err)
				}
			}()
			closer := func() error {
				signal.Stop(hup)
				cancel()
				<-done
				if auditCloser != nil {
					return auditCloser.Close()
				}
				return nil
			}
			return &opened{Kinds: []plugin.Kind{authz.NewHandler(policy.NewPlugin(e, policy.NewAudit(audit), m))}, Close: closer}, nil
		},
	})
}
