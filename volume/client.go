package volume

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/dockplug/dockplug/plugin"
)

// The daemon's per-call bounds (daemon/volume/drivers/proxy.go, G4). Vars so
// tests can shorten them.
var (
	longTimeout  = 2 * time.Minute // Create, Mount
	shortTimeout = 1 * time.Minute // the rest
)

// ErrNoSuchVolume is what Client.Get returns when the plugin answers a null
// Volume; its text is the daemon's.
var ErrNoSuchVolume = errors.New("no such volume")

// ErrInvalidScope is wrapped in the error Client.Capabilities returns when
// the plugin reports a scope other than local or global (the daemon logs a
// warning and uses local).
var ErrInvalidScope = errors.New("invalid volume scope")

// IsNoSuchVolume applies the daemon's rule to an error from Client.Get (G2):
// every error except a network error (plugin unreachable after retries,
// timeout) means the volume does not exist, and the daemon then purges its
// record of it. That includes non-200 answers, a 200 with "Err" and an
// answer that fails to decode.
func IsNoSuchVolume(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return !errors.As(err, &ne)
}

// Client drives a volume plugin exactly as dockerd does: same requests,
// same per-call timeouts, same error rules. It implements Driver, so
// NewHandler(NewClient(c)) is a transparent proxy.
type Client struct {
	c *plugin.Client
}

var _ Driver = (*Client)(nil)

// NewClient wraps a connected plugin client (see plugin.Registry.Get).
func NewClient(c *plugin.Client) *Client { return &Client{c: c} }

// Plugin returns the underlying plugin client.
func (c *Client) Plugin() *plugin.Client { return c.c }

// call sends args and returns the 200 body. Non-200 answers come back as
// *plugin.StatusError from plugin.Client.
func (c *Client) call(ctx context.Context, method string, timeout time.Duration, args any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.c.CallRaw(ctx, method, args)
}

// Create calls VolumeDriver.Create. A nil req sends the zero request.
func (c *Client) Create(ctx context.Context, req *CreateRequest) error {
	if req == nil {
		req = &CreateRequest{}
	}
	body, err := c.call(ctx, MethodCreate, longTimeout, req)
	if err != nil {
		return err
	}
	return decodeErr(MethodCreate, body)
}

// Remove calls VolumeDriver.Remove.
func (c *Client) Remove(ctx context.Context, req *RemoveRequest) error {
	if req == nil {
		req = &RemoveRequest{}
	}
	body, err := c.call(ctx, MethodRemove, shortTimeout, req)
	if err != nil {
		return err
	}
	return decodeErr(MethodRemove, body)
}

// Mount calls VolumeDriver.Mount. Like the daemon, it accepts an empty
// Mountpoint without complaint.
func (c *Client) Mount(ctx context.Context, req *MountRequest) (*MountResponse, error) {
	if req == nil {
		req = &MountRequest{}
	}
	body, err := c.call(ctx, MethodMount, longTimeout, req)
	if err != nil {
		return nil, err
	}
	return decodeMount(body)
}

// Unmount calls VolumeDriver.Unmount.
func (c *Client) Unmount(ctx context.Context, req *UnmountRequest) error {
	if req == nil {
		req = &UnmountRequest{}
	}
	body, err := c.call(ctx, MethodUnmount, shortTimeout, req)
	if err != nil {
		return err
	}
	return decodeErr(MethodUnmount, body)
}

// Path calls VolumeDriver.Path.
func (c *Client) Path(ctx context.Context, req *PathRequest) (*PathResponse, error) {
	if req == nil {
		req = &PathRequest{}
	}
	body, err := c.call(ctx, MethodPath, shortTimeout, req)
	if err != nil {
		return nil, err
	}
	return decodePath(body)
}

// Get calls VolumeDriver.Get. A null Volume is ErrNoSuchVolume; use
// IsNoSuchVolume to judge any error the way the daemon does. On success the
// response's Volume is never nil.
func (c *Client) Get(ctx context.Context, req *GetRequest) (*GetResponse, error) {
	if req == nil {
		req = &GetRequest{}
	}
	body, err := c.call(ctx, MethodGet, shortTimeout, req)
	if err != nil {
		return nil, err
	}
	return decodeGet(body)
}

// List calls VolumeDriver.List (request body {} as the daemon sends it).
// A null entry in Volumes is an error: it would crash dockerd.
func (c *Client) List(ctx context.Context) (*ListResponse, error) {
	body, err := c.call(ctx, MethodList, shortTimeout, struct{}{})
	if err != nil {
		return nil, err
	}
	return decodeList(body)
}

// Capabilities calls VolumeDriver.Capabilities and always returns a usable
// answer whose Scope is ScopeLocal or ScopeGlobal, as the daemon derives it:
// on any error, or an empty scope, it is local; the scope is lower-cased;
// an unknown scope is local and the error wraps ErrInvalidScope. The error
// is informational: the daemon carries on with the answer in every case.
func (c *Client) Capabilities(ctx context.Context) (*CapabilitiesResponse, error) {
	body, err := c.call(ctx, MethodCapabilities, shortTimeout, struct{}{})
	if err != nil {
		return localCaps(), err
	}
	return decodeCapabilities(body)
}

func localCaps() *CapabilitiesResponse {
	return &CapabilitiesResponse{Capabilities: Capability{Scope: ScopeLocal}}
}

// The decoders below turn a 200 body into a result like the daemon's
// generated proxy: decode (case-insensitive keys, unknown keys and trailing
// data ignored, empty body an error), then a non-empty Err becomes
// errors.New(Err) verbatim and wins over everything else.

func decodeErr(method string, body []byte) error {
	var r errReply
	if err := plugin.DecodeResponse(method, body, &r); err != nil {
		return err
	}
	if r.Err != "" {
		return errors.New(r.Err)
	}
	return nil
}

func decodeMount(body []byte) (*MountResponse, error) {
	var r mountReply
	if err := plugin.DecodeResponse(MethodMount, body, &r); err != nil {
		return nil, err
	}
	if r.Err != "" {
		return nil, errors.New(r.Err)
	}
	return &r.MountResponse, nil
}

func decodePath(body []byte) (*PathResponse, error) {
	var r pathReply
	if err := plugin.DecodeResponse(MethodPath, body, &r); err != nil {
		return nil, err
	}
	if r.Err != "" {
		return nil, errors.New(r.Err)
	}
	return &r.PathResponse, nil
}

func decodeGet(body []byte) (*GetResponse, error) {
	var r getReply
	if err := plugin.DecodeResponse(MethodGet, body, &r); err != nil {
		return nil, err
	}
	if r.Err != "" {
		return nil, errors.New(r.Err)
	}
	if r.Volume == nil {
		return nil, ErrNoSuchVolume
	}
	return &r.GetResponse, nil
}

func decodeList(body []byte) (*ListResponse, error) {
	var r listReply
	if err := plugin.DecodeResponse(MethodList, body, &r); err != nil {
		return nil, err
	}
	if r.Err != "" {
		return nil, errors.New(r.Err)
	}
	for i, v := range r.Volumes {
		if v == nil {
			return nil, fmt.Errorf("%s: volume %d is null (dockerd would crash on it)", MethodList, i)
		}
	}
	return &r.ListResponse, nil
}

func decodeCapabilities(body []byte) (*CapabilitiesResponse, error) {
	var r capabilitiesReply
	if err := plugin.DecodeResponse(MethodCapabilities, body, &r); err != nil {
		return localCaps(), err
	}
	if r.Err != "" {
		return localCaps(), errors.New(r.Err)
	}
	switch scope := strings.ToLower(r.Capabilities.Scope); scope {
	case "", ScopeLocal:
		return localCaps(), nil
	case ScopeGlobal:
		return &CapabilitiesResponse{Capabilities: Capability{Scope: ScopeGlobal}}, nil
	default:
		return localCaps(), fmt.Errorf("%s: %w %q, using %q", MethodCapabilities, ErrInvalidScope, r.Capabilities.Scope, ScopeLocal)
	}
}
