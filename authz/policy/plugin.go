package policy

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockplug/dockplug/authz"
)

// Plugin serves an Engine as an authorization plugin, with one audit line
// and one counted metric per decision.
type Plugin struct {
	engine  *Engine
	audit   *Audit
	metrics *Metrics
}

// NewPlugin returns the plugin; audit and metrics may be nil.
func NewPlugin(e *Engine, audit *Audit, m *Metrics) *Plugin {
	return &Plugin{engine: e, audit: audit, metrics: m}
}

var _ authz.Plugin = (*Plugin)(nil)

// AuthZReq decides a request. A deny is an answer, never an error, so the
// user sees the message (HTTP 403).
func (p *Plugin) AuthZReq(ctx context.Context, req *authz.Request) (*authz.Response, error) {
	return p.decide(ctx, req, false), nil
}

// AuthZRes decides a response (allowed unless a response rule denies).
func (p *Plugin) AuthZRes(ctx context.Context, req *authz.Request) (*authz.Response, error) {
	return p.decide(ctx, req, true), nil
}

func (p *Plugin) decide(ctx context.Context, req *authz.Request, response bool) *authz.Response {
	d := p.engine.Decide(ctx, req, response)
	phase := "request"
	if response {
		phase = "response"
	}
	p.metrics.observe(phase, d)
	p.audit.Write(phase, d)
	if d.Allow {
		return authz.Allow()
	}
	return authz.Deny(d.Message)
}

// Metrics counts decisions per phase, action and decision, and reloads.
type Metrics struct {
	decisions *prometheus.CounterVec
	reloads   *prometheus.CounterVec
}

// NewMetrics registers the authz metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockplug_authz_decisions_total", Help: "Authorization decisions by phase, action and decision.",
		}, []string{"phase", "action", "decision"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dockplug_authz_policy_reloads_total", Help: "Policy loads by result (ok, error).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.decisions, m.reloads)
	return m
}

// Reloaded counts a policy load; pass it as Engine.OnReload.
func (m *Metrics) Reloaded(ok bool) {
	if m == nil {
		return
	}
	r := "ok"
	if !ok {
		r = "error"
	}
	m.reloads.WithLabelValues(r).Inc()
}

func (m *Metrics) observe(phase string, d Decision) {
	if m == nil {
		return
	}
	dec := "deny"
	if d.Allow {
		dec = "allow"
	}
	// Unknown routes share one label value: the path is attacker-chosen.
	m.decisions.WithLabelValues(phase, orNone(d.Action), dec).Inc()
}

func orNone(a string) string {
	if a == "" {
		return "none"
	}
	return a
}

// Audit writes one JSON line per decision. It never logs bodies, headers
// or query strings: env values, registry auth and build args stay out.
type Audit struct {
	mu sync.Mutex
	w  io.Writer
	// Responses: also log AuthZRes decisions (off: they double the log
	// and almost always allow).
	Responses bool
}

// NewAudit writes to w.
func NewAudit(w io.Writer) *Audit { return &Audit{w: w} }

type auditLine struct {
	Time     string  `json:"time"`
	Phase    string  `json:"phase"`
	User     string  `json:"user"`
	Action   string  `json:"action"`
	Path     string  `json:"path"`
	Decision string  `json:"decision"`
	Rule     string  `json:"rule"`
	Message  string  `json:"message,omitempty"`
	EvalUS   float64 `json:"eval_us"`
}

// Write logs d.
func (a *Audit) Write(phase string, d Decision) {
	if a == nil || (phase == "response" && !a.Responses) {
		return
	}
	dec := "deny"
	if d.Allow {
		dec = "allow"
	}
	b, err := json.Marshal(auditLine{Time: time.Now().UTC().Format(time.RFC3339Nano), Phase: phase, User: d.User,
		Action: d.Action, Path: d.Path, Decision: dec, Rule: d.Rule, Message: d.Message,
		EvalUS: float64(d.Elapsed.Nanoseconds()) / 1e3})
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, _ = a.w.Write(append(b, '\n'))
}
