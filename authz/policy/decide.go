package policy

import (
	"context"
	"fmt"
	"time"

	"cel.dev/cel-go/interpreter"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/authz/identity"
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
	// UID is the caller's uid from the identity proxy; -1 when unknown.
	UID     int64
	Elapsed time.Duration
}

// Identity turns the identity proxy's signed header (package
// authz/identity) into user.uid, user.gid, user.name and user.groups.
type Identity struct {
	Verifier *identity.Verifier
	Accounts *identity.Accounts
}

// apply sets in.User from req's identity header, or returns why the
// request cannot be judged. Without the header the user stays anonymous
// (uid and gid -1). With it, it must verify: a header that does not (or
// one sent to a plugin without a key, which cannot tell a forgery) is
// someone claiming to be someone else.
func (id *Identity) apply(req *authz.Request, in *normalize.Input, response bool) string {
	value, ok := req.RequestHeaders[identity.Header]
	if !ok {
		return ""
	}
	if id == nil || id.Verifier == nil {
		return "the request carries an " + identity.Header + " header, but this plugin has no identity key to verify it (--authz-identity-key)"
	}
	c, err := id.Verifier.Verify(value, req.RequestMethod, req.RequestURI, response)
	if err != nil {
		return err.Error()
	}
	in.User.UID, in.User.GID = int64(c.UID), int64(c.GID)
	in.User.AuthMethod = "peercred"
	if id.Accounts != nil {
		acc := id.Accounts.Lookup(c.UID, c.GID)
		if in.User.Name == "" {
			in.User.Name = acc.Name
		}
		in.User.Groups = acc.Groups
	}
	return ""
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

// Decide judges an AuthZReq (response false) or AuthZRes (response true)
// without an identity key: a request with an identity header is denied.
func (p *Policy) Decide(ctx context.Context, req *authz.Request, response bool) Decision {
	return p.DecideAs(ctx, req, response, nil)
}

// DecideAs is Decide with identity headers verified by id (nil: none is
// trusted). It never panics and always decides: anything it cannot judge
// is denied.
func (p *Policy) DecideAs(ctx context.Context, req *authz.Request, response bool, id *Identity) (d Decision) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			d = Decision{Rule: "panic", UID: -1, Message: fmt.Sprintf("authorization failed internally (%v): denied", r)}
		}
		d.Elapsed = time.Since(start)
	}()
	in := normalize.Normalize(req)
	prob := id.apply(req, in, response)
	d.Action, d.Path, d.User, d.UID = in.Request.Action, in.Request.Path, in.User.Name, in.User.UID
	if prob != "" && !response {
		d.Rule, d.Message = "identity", "cannot be judged: "+prob
		return d
	}
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
