package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/authz/policy"
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
