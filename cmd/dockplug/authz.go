package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/authz/identity"
	"github.com/dockplug/dockplug/authz/policy"
	"github.com/dockplug/dockplug/authz/proxy"
)

// newAuthzCmd is `dockplug authz`: the tools a policy author needs, usable
// in CI. It is wired in by root.go.
func newAuthzCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authz",
		Short: "Lint and try dockplug-authz policies",
	}
	var policyFile string
	var asJSON bool
	test := &cobra.Command{
		Use:   "test --policy FILE [REQUEST.json...]",
		Short: "Print the decision and the deciding rule for each AuthZReq (files, or stdin with none or -)",
		Long: `Each REQUEST.json holds one or more AuthZReq objects, exactly as dockerd posts
them to /AuthZPlugin.AuthZReq (keys RequestMethod, RequestUri, RequestHeaders,
base64 RequestBody, User...), one after another or one per line. The exit
status is 0 when every request was decided, whatever the decisions.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := policy.Load(policyFile)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				args = []string{"-"}
			}
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "REQUEST\tDECISION\tRULE\tACTION\tMESSAGE")
			}
			for _, a := range args {
				if err := testFile(cmd.Context(), cmd.InOrStdin(), a, p, func(name string, d policy.Decision) {
					dec := "deny"
					if d.Allow {
						dec = "allow"
					}
					if asJSON {
						_ = json.NewEncoder(out).Encode(map[string]any{"request": name, "decision": dec, "rule": d.Rule, "action": d.Action, "message": d.Message})
						return
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, dec, d.Rule, d.Action, d.Message)
				}); err != nil {
					return err
				}
			}
			return tw.Flush()
		},
	}
	test.Flags().StringVar(&policyFile, "policy", "", "policy file")
	test.Flags().BoolVar(&asJSON, "json", false, "one JSON object per decision")
	_ = test.MarkFlagRequired("policy")

	var lintFile string
	lint := &cobra.Command{
		Use:   "lint --policy FILE",
		Short: "Lint a policy: it must parse and every rule must type-check (errors name the rule and its line)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := policy.Load(lintFile); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", lintFile)
			return nil
		},
	}
	lint.Flags().StringVar(&lintFile, "policy", "", "policy file")
	_ = lint.MarkFlagRequired("policy")
	cmd.AddCommand(test, lint)
	return cmd
}

// testFile decides every AuthZReq in the named file ("-" is stdin).
func testFile(ctx context.Context, stdin io.Reader, name string, p *policy.Policy, report func(string, policy.Decision)) error {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	dec := json.NewDecoder(r)
	for i := 1; ; i++ {
		var req authz.Request
		err := dec.Decode(&req)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: request %d: %w", name, i, err)
		}
		label := name
		if i > 1 || dec.More() {
			label = fmt.Sprintf("%s#%d", name, i)
		}
		report(label, p.Decide(ctx, &req, false))
	}
}

// newAuthzProxyCmd is `dockplug authz-proxy`: the identity proxy in front
// of the daemon's socket (package authz/proxy).
func newAuthzProxyCmd() *cobra.Command {
	var listen, upstream, keyFile, group, mode string
	cmd := &cobra.Command{
		Use:   "authz-proxy --listen SOCKET --upstream DAEMON-SOCKET --identity-key FILE",
		Short: "Serve the daemon's API on a socket of its own, telling dockplug-authz each caller's uid and gid",
		Long: `authz-proxy listens on --listen and forwards every request to the daemon's
socket, streams and hijacked connections (attach, exec) included. For each
connection it reads the caller's uid, gid and pid (SO_PEERCRED); it removes
any X-Dockplug-Identity header the caller sent and adds its own, signed with
the key in --identity-key (created, mode 0600, if missing). Give the plugin
the same file: dockplug serve dockplug-authz --authz-identity-key FILE.
Policies then see user.uid, user.gid, user.name and user.groups.

Expose only this socket to users: anyone who can reach the daemon's own
socket bypasses the proxy (and is anonymous to the plugin).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" {
				return errors.New("--identity-key is required: the plugin must be able to tell the proxy's header from a forged one")
			}
			key, err := identity.ReadOrCreateKey(keyFile)
			if err != nil {
				return err
			}
			perm, err := strconv.ParseUint(mode, 8, 32)
			if err != nil || perm&^0o777 != 0 {
				return fmt.Errorf("--socket-mode %q: want an octal mode such as 0660", mode)
			}
			gid := -1
			if group != "" {
				g, err := lookupGID(group)
				if err != nil {
					return fmt.Errorf("--socket-group: %w", err)
				}
				gid = g
			}
			l, err := proxy.Listen(listen, fs.FileMode(perm), gid)
			if err != nil {
				return err
			}
			defer os.Remove(listen)
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			log.Info("authz-proxy serving", "listen", listen, "upstream", upstream)
			return proxy.New(upstream, key, log).Serve(cmd.Context(), l)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "/run/docker-authz.sock", "the socket users call (DOCKER_HOST=unix://SOCKET)")
	f.StringVar(&upstream, "upstream", "/var/run/docker.sock", "the daemon's socket")
	f.StringVar(&keyFile, "identity-key", "", "key FILE shared with dockplug-authz (--authz-identity-key); created if missing")
	f.StringVar(&mode, "socket-mode", "0666", "mode of the listening socket (octal): who may connect")
	f.StringVar(&group, "socket-group", "", "group (name or GID) owning the listening socket")
	return cmd
}

func lookupGID(group string) (int, error) {
	if n, err := strconv.Atoi(group); err == nil {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}
