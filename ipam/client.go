package ipam

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/dockplug/dockplug/plugin"
)

// ErrNoAddress is the daemon's error (ipamapi.ErrNoIPReturned) for a
// RequestAddress answer without an Address.
var ErrNoAddress = errors.New("no address returned")

// RemoteError is a 200 answer whose "Error" key was set. Its text is the
// daemon's: "remote: <Error>".
type RemoteError struct {
	Method string // full method name
	Msg    string // the "Error" value
}

func (e *RemoteError) Error() string { return "remote: " + e.Msg }

// Client calls an IPAM plugin the way the daemon does. Errors are
// *plugin.StatusError for non-200 answers, *RemoteError for a 200 with
// "Error", or decoding and validation errors with the daemon's checks.
type Client struct {
	c *plugin.Client
}

// NewClient wraps a plugin client.
func NewClient(c *plugin.Client) *Client { return &Client{c: c} }

// GetCapabilities asks for the driver's capabilities. On any error the
// daemon still registers the driver, with empty capabilities: that is what
// the non-nil *CapabilitiesResponse returned along with the error is.
func (c *Client) GetCapabilities(ctx context.Context) (*CapabilitiesResponse, error) {
	resp, err := call[CapabilitiesResponse](ctx, c.c, MethodGetCapabilities, nil)
	if err != nil {
		return &CapabilitiesResponse{}, err
	}
	return resp, nil
}

// GetDefaultAddressSpaces asks for the local and global default spaces.
func (c *Client) GetDefaultAddressSpaces(ctx context.Context) (*AddressSpacesResponse, error) {
	return call[AddressSpacesResponse](ctx, c.c, MethodGetDefaultAddressSpaces, nil)
}

// RequestPool asks for a pool. Like the daemon it fails when the answer's
// Pool does not parse as a prefix. Unlike the daemon's proxy it makes no
// GetDefaultAddressSpaces call first and no host-overlap retries.
func (c *Client) RequestPool(ctx context.Context, req *RequestPoolRequest) (*RequestPoolResponse, error) {
	body, err := c.c.CallRaw(ctx, MethodRequestPool, req)
	if err != nil {
		return nil, err
	}
	return decodeRequestPool(body)
}

// ReleasePool releases a pool.
func (c *Client) ReleasePool(ctx context.Context, req *ReleasePoolRequest) error {
	_, err := call[releaseResponse](ctx, c.c, MethodReleasePool, req)
	return err
}

// RequestAddress asks for an address. Like the daemon it fails with
// ErrNoAddress when the answer has no Address, and when the Address is not
// in CIDR form.
func (c *Client) RequestAddress(ctx context.Context, req *RequestAddressRequest) (*RequestAddressResponse, error) {
	body, err := c.c.CallRaw(ctx, MethodRequestAddress, req)
	if err != nil {
		return nil, err
	}
	return decodeRequestAddress(body)
}

// ReleaseAddress releases an address.
func (c *Client) ReleaseAddress(ctx context.Context, req *ReleaseAddressRequest) error {
	_, err := call[releaseResponse](ctx, c.c, MethodReleaseAddress, req)
	return err
}

// response is a wire answer with the daemon's "Error" key.
type response[T any] interface {
	*T
	remoteError() string
}

func call[T any, P response[T]](ctx context.Context, c *plugin.Client, method string, args any) (*T, error) {
	body, err := c.CallRaw(ctx, method, args)
	if err != nil {
		return nil, err
	}
	return decode[T, P](method, body)
}

// decode is the daemon's handling of a 200 answer: decode (an empty body is
// an error, G19), then fail on a non-empty "Error" only; "Err" is not looked
// at (G12).
func decode[T any, P response[T]](method string, body []byte) (*T, error) {
	v := new(T)
	if err := plugin.DecodeResponse(method, body, v); err != nil {
		return nil, err
	}
	if msg := P(v).remoteError(); msg != "" {
		return nil, &RemoteError{Method: method, Msg: msg}
	}
	return v, nil
}

func decodeRequestPool(body []byte) (*RequestPoolResponse, error) {
	resp, err := decode[RequestPoolResponse](MethodRequestPool, body)
	if err != nil {
		return nil, err
	}
	// Same parser and error text as libnetwork's remote IPAM.
	if _, err := netip.ParsePrefix(resp.Pool); err != nil {
		return nil, err
	}
	return resp, nil
}

func decodeRequestAddress(body []byte) (*RequestAddressResponse, error) {
	resp, err := decode[RequestAddressResponse](MethodRequestAddress, body)
	if err != nil {
		return nil, err
	}
	if resp.Address == "" {
		return nil, ErrNoAddress
	}
	// libnetwork uses types.ParseCIDR, i.e. net.ParseCIDR.
	if _, _, err := net.ParseCIDR(resp.Address); err != nil {
		return nil, err
	}
	return resp, nil
}
