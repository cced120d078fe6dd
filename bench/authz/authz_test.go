package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	dpauthz "github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/authz/normalize/moby"
	"github.com/dockplug/dockplug/authz/policy"
	"github.com/dockplug/dockplug/plugin"
)

func dockplugPolicy(tb testing.TB) *policy.Policy {
	f, err := policy.ParseFile([]byte(Policy))
	if err != nil {
		tb.Fatal(err)
	}
	p, err := policy.Compile(f, "bench.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func opaQuery(tb testing.TB) rego.PreparedEvalQuery {
	q, err := rego.New(rego.Query("data.docker.authz.allow"), rego.Module("authz.rego", Rego)).PrepareForEval(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return q
}

// opaInput builds the input as opa-docker-authz does: the AuthZReq's
// fields, with the body decoded into a generic value and the path split
// from the query.
func opaInput(req *dpauthz.Request) (map[string]any, error) {
	var body any
	if len(req.RequestBody) > 0 {
		if err := json.Unmarshal(req.RequestBody, &body); err != nil {
			return nil, fmt.Errorf("decode body: %w", err)
		}
	}
	path, _, _ := strings.Cut(req.RequestURI, "?")
	return map[string]any{"Method": req.RequestMethod, "Path": path, "Headers": req.RequestHeaders, "Body": body, "User": req.User}, nil
}

func opaAllow(ctx context.Context, q rego.PreparedEvalQuery, req *dpauthz.Request) (bool, error) {
	in, err := opaInput(req)
	if err != nil {
		return false, err
	}
	rs, err := q.Eval(ctx, rego.EvalInput(in))
	if err != nil {
		return false, fmt.Errorf("opa eval: %w", err)
	}
	return rs.Allowed(), nil
}

// TestSameDecisions: the two policies agree on the benchmark's request
// (allowed) and on its privileged variant (denied), so both do the work.
func TestSameDecisions(t *testing.T) {
	p, q := dockplugPolicy(t), opaQuery(t)
	ctx := context.Background()
	body := CreateBody()
	if n := len(body); n < 1800 || n > 2300 {
		t.Errorf("body is %d bytes, want about 2 KiB", n)
	}
	for _, tc := range []struct {
		name  string
		body  []byte
		allow bool
	}{{"ordinary", body, true}, {"privileged", Privileged(), false}} {
		req := Request(tc.body)
		d := p.Decide(ctx, req, false)
		o, err := opaAllow(ctx, q, req)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allow != tc.allow || o != tc.allow {
			t.Errorf("%s: dockplug %v (%s %s), opa %v; want %v", tc.name, d.Allow, d.Rule, d.Message, o, tc.allow)
		}
	}
}

// BenchmarkDecision: one decision for the 2 KiB create under 25 rules.
func BenchmarkDecision(b *testing.B) {
	ctx := context.Background()
	req := Request(CreateBody())
	b.Run("dockplug", func(b *testing.B) {
		p := dockplugPolicy(b)
		b.ReportAllocs()
		for b.Loop() {
			if d := p.Decide(ctx, req, false); !d.Allow {
				b.Fatal(d.Message)
			}
		}
	})
	b.Run("opa", func(b *testing.B) {
		q := opaQuery(b)
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := opaAllow(ctx, q, req); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("opa-eval-only", func(b *testing.B) {
		q := opaQuery(b)
		in, err := opaInput(req)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			rs, err := q.Eval(ctx, rego.EvalInput(in))
			if err != nil || !rs.Allowed() {
				b.Fatal(err)
			}
		}
	})
	b.Run("json-floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c moby.CreateRequest
			if err := json.Unmarshal(req.RequestBody, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSocket: the full plugin (metrics, audit to io.Discard) over its
// unix socket, called as dockerd calls it, by 1 and 32 callers.
func BenchmarkSocket(b *testing.B) {
	dir := b.TempDir()
	pol := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(pol, []byte(Policy), 0o600); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	e := policy.NewEngine(pol, log)
	sock := filepath.Join(dir, "authz.sock")
	srv, err := plugin.NewServer(plugin.Config{Name: "bench-authz", SocketPath: sock, Logger: log},
		dpauthz.NewHandler(policy.NewPlugin(e, policy.NewAudit(io.Discard), nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	payload, err := json.Marshal(Request(CreateBody()))
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []int{1, 32} {
		b.Run(fmt.Sprintf("c%d", c), func(b *testing.B) {
			tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			}, MaxIdleConns: c, MaxIdleConnsPerHost: c, DisableCompression: true}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr}
			call := func() error {
				req, _ := http.NewRequest("POST", "http://plugin.moby.localhost/AuthZPlugin.AuthZReq", bytes.NewReader(payload))
				req.Header.Set("Accept", "application/vnd.docker.plugins.v1.2+json")
				resp, err := cl.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				var r dpauthz.Response
				if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
					return err
				}
				if !r.Allow {
					return fmt.Errorf("denied: %s", r.Msg)
				}
				return nil
			}
			// Wait for the socket.
			for i := 0; ; i++ {
				if err := call(); err == nil {
					break
				} else if i > 200 {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			if c == 1 {
				for b.Loop() {
					if err := call(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
				return
			}
			// RunParallel starts GOMAXPROCS × parallelism goroutines.
			b.SetParallelism(max(1, c/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := call(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}
