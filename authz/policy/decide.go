package policy

import (
	"context"
	"fmt"
	"time"

	"cel.dev/cel-go/interpreter"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/authz/normalize"
)

// Decision is the answer to one request.
type Decision struct {
	Allow bool
	// Rule names the rule that decided: "baseline/privileged", an
	// operator rule's name, "default", or for requests that cannot be
	// judged "normalize/route", "normalize/missing-body",
	// "normalize/bad-body", "no-policy", "panic", "error".
	Rule    string
	Message string
	Action  string
	Path    string
	User    string
	Elapsed time.Duration
}

// activation holds a request's variables for CEL, without a map per call.
type activation struct {
	in        *normalize.Input
	allowBind []string
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "request":
		return &a.in.Request, true
	case "user":
		return &a.in.User, true
	case "container":
		return &a.in.Container, true
	case "exec":
		return &a.in.Exec, true
	case "volume":
		return &a.in.Volume, true
	case "service":
		return &a.in.Service, true
	case "plugin":
		return &a.in.Plugin, true
	case "build":
		return &a.in.Build, true
	case "allowBind":
		return a.allowBind, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// Decide judges an AuthZReq (response false) or AuthZRes (response true).
// It never panics and always decides: anything it cannot judge is denied.
func (p *Policy) Decide(ctx context.Context, req *authz.Request, response bool) (d Decision) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			d = Decision{Rule: "panic", Message: fmt.Sprintf("authorization failed internally (%v): denied", r)}
		}
		d.Elapsed = time.Since(start)
	}()
	in := normalize.Normalize(req)
	d.Action, d.Path, d.User = in.Request.Action, in.Request.Path, in.User.Name
	if in.Problem != "" && !response {
		d.Rule, d.Message = "normalize/"+in.ProblemKind, "cannot be judged: "+in.Problem
		return d
	}
	act := &activation{in: in, allowBind: p.allowBind}
	for _, r := range p.rules {
		if r.response != response {
			continue
		}
		out, _, err := r.prg.ContextEval(ctx, act)
		if err != nil {
			d.Rule, d.Message = r.Name, fmt.Sprintf("rule %s failed: %v", r.Name, err)
			return d
		}
		if b, ok := out.Value().(bool); !ok || !b {
			continue
		}
		d.Allow, d.Rule, d.Message = r.allow, r.Name, r.Message
		if !r.allow && d.Message == "" {
			d.Message = "denied by rule " + r.Name
		}
		return d
	}
	d.Rule = "default"
	// Responses are allowed unless a response rule says otherwise: the
	// request was already judged.
	d.Allow = response || p.allowAll
	if !d.Allow {
		d.Message = "no rule allows " + orUnknown(d.Action)
	}
	return d
}

func orUnknown(a string) string {
	if a == "" {
		return "this request"
	}
	return a
}
