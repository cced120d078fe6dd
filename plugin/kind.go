package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Method is one RPC of a plugin kind. body is the raw request body, which may
// be empty (the daemon sends no body for several calls, G19). The returned
// value is JSON-encoded as the 200 answer; nil is answered as {}.
type Method func(ctx context.Context, body []byte) (any, error)

// Kind is one protocol a Server serves: the protocol packages (volume,
// network, ipam, authz) provide Handlers that implement it.
type Kind interface {
	// Implements is the string the daemon looks for in Plugin.Activate's
	// answer, case-sensitive (G20): "VolumeDriver", "NetworkDriver",
	// "IpamDriver", "authz".
	Implements() string
	// Methods maps full method names ("VolumeDriver.Create") to their
	// implementations.
	Methods() map[string]Method
}

// Decode unmarshals a request body into v. An empty body leaves v at its
// zero value (the daemon sends nothing for argument-less calls). Errors are
// answered with 400.
func Decode(body []byte, v any) error {
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("decode request: %v", err), Err: err}
	}
	return nil
}

// Handle adapts a typed function to a Method: it decodes the request into a
// new Req and returns fn's answer.
func Handle[Req any, Resp any](fn func(ctx context.Context, req *Req) (Resp, error)) Method {
	return func(ctx context.Context, body []byte) (any, error) {
		req := new(Req)
		if err := Decode(body, req); err != nil {
			return nil, err
		}
		return fn(ctx, req)
	}
}
