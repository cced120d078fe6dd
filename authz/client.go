package authz

import (
	"context"
	"fmt"
	"net/http"

	"github.com/dockplug/dockplug/plugin"
)

// Client calls an authorization plugin the way the daemon does: a non-200
// answer is a *plugin.StatusError ("AuthZPlugin.AuthZReq: <Err or body>"),
// and a 200 answer is a decision whatever its Err says.
type Client struct {
	c *plugin.Client
}

// NewClient wraps a plugin client.
func NewClient(c *plugin.Client) *Client { return &Client{c: c} }

// AuthZReq asks whether the API request may proceed.
func (c *Client) AuthZReq(ctx context.Context, req *Request) (*Response, error) {
	return c.call(ctx, MethodAuthZReq, req)
}

// AuthZRes asks whether the API response may be sent.
func (c *Client) AuthZRes(ctx context.Context, req *Request) (*Response, error) {
	return c.call(ctx, MethodAuthZRes, req)
}

func (c *Client) call(ctx context.Context, method string, req *Request) (*Response, error) {
	body, err := c.c.CallRaw(ctx, method, req)
	if err != nil {
		return nil, err
	}
	return decodeResponse(method, body)
}

// decodeResponse is the daemon's handling of a 200: decode (an empty body is
// an error, G19) and nothing else; Err is kept for diagnostics only.
func decodeResponse(method string, body []byte) (*Response, error) {
	var r Response
	if err := plugin.DecodeResponse(method, body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DeniedError is the daemon's error for a deny: HTTP 403 to the API client.
type DeniedError struct {
	Plugin string
	Msg    string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("authorization denied by plugin %s: %s", e.Plugin, e.Msg)
}

// HTTPStatus is the status the daemon answers the API call with.
func (e *DeniedError) HTTPStatus() int { return http.StatusForbidden }

// FailedError is the daemon's error when a plugin call failed (transport
// error, non-200 answer, bad JSON): HTTP 500 to the API client.
type FailedError struct {
	Plugin string
	Err    error
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("plugin %s failed with error: %s", e.Plugin, e.Err)
}

func (e *FailedError) Unwrap() error { return e.Err }

// HTTPStatus is the status the daemon answers the API call with.
func (e *FailedError) HTTPStatus() int { return http.StatusInternalServerError }

// Verdict is what the daemon makes of one plugin's answer (res, err from
// AuthZReq or AuthZRes) for the plugin it knows as pluginName (for managed
// plugins, the full name such as "p:latest"): nil if the call may proceed,
// a *FailedError if the call failed, a *DeniedError if the plugin denied.
// Err in a 200 answer is ignored, as the daemon does.
func Verdict(pluginName string, res *Response, err error) error {
	if err != nil {
		return &FailedError{Plugin: pluginName, Err: err}
	}
	if res == nil || !res.Allow {
		msg := ""
		if res != nil {
			msg = res.Msg
		}
		return &DeniedError{Plugin: pluginName, Msg: msg}
	}
	return nil
}
