package authz

import (
	"context"
	"net/http"

	"github.com/dockplug/dockplug/plugin"
)

// Plugin is an authorization plugin. A non-nil error, like a Response with
// Err set, fails the API call closed: the daemon answers it with HTTP 500
// (G14). To refuse a request, return Deny(msg) and a nil error: the user
// then gets HTTP 403 with msg.
type Plugin interface {
	// AuthZReq decides before the daemon handles the API request.
	AuthZReq(ctx context.Context, req *Request) (*Response, error)
	// AuthZRes decides after the daemon handled it, with the Response*
	// fields set. Its deny is ignored when the daemon's handler failed, and
	// comes too late for hijacked and streaming endpoints.
	AuthZRes(ctx context.Context, req *Request) (*Response, error)
}

// Handler serves a Plugin as the "authz" plugin kind.
type Handler struct {
	p Plugin
}

// NewHandler returns a Handler for p, to pass to plugin.NewServer.
func NewHandler(p Plugin) *Handler { return &Handler{p: p} }

// Implements returns "authz".
func (h *Handler) Implements() string { return Implements }

// Methods returns AuthZPlugin.AuthZReq and AuthZPlugin.AuthZRes.
func (h *Handler) Methods() map[string]plugin.Method {
	return map[string]plugin.Method{
		MethodAuthZReq: plugin.Handle(func(ctx context.Context, req *Request) (*Response, error) {
			return h.decide(ctx, req, h.p.AuthZReq)
		}),
		MethodAuthZRes: plugin.Handle(func(ctx context.Context, req *Request) (*Response, error) {
			return h.decide(ctx, req, h.p.AuthZRes)
		}),
	}
}

func (h *Handler) decide(ctx context.Context, req *Request, fn func(context.Context, *Request) (*Response, error)) (*Response, error) {
	// The daemon always fills these from the API request it guards.
	if req.RequestMethod == "" {
		return nil, plugin.BadRequest("RequestMethod is required")
	}
	if req.RequestURI == "" {
		return nil, plugin.BadRequest("RequestUri is required")
	}
	resp, err := fn(ctx, req)
	switch {
	case err != nil:
		return nil, err
	case resp == nil:
		// {} would deny without a message; say what went wrong instead.
		return nil, plugin.Errorf(http.StatusInternalServerError, "authorization plugin returned no decision")
	case resp.Err != "":
		// On a 200 the daemon ignores Err, even with Allow set: fail closed.
		return nil, &plugin.Error{Status: http.StatusInternalServerError, Msg: resp.Err}
	}
	return resp, nil
}
