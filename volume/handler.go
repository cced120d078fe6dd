package volume

import (
	"context"
	"maps"
	"net/http"

	"github.com/dockplug/dockplug/plugin"
)

// Driver is a volume plugin. Every method gets a request the Handler has
// already checked (see each request type). Returned errors reach the daemon
// as the call's error; wrap a *plugin.Error to choose the HTTP status.
//
// Get decides whether the daemon believes a volume exists (G2): return an
// error or a nil Volume only for volumes that really do not exist.
type Driver interface {
	Create(ctx context.Context, req *CreateRequest) error
	Remove(ctx context.Context, req *RemoveRequest) error
	Mount(ctx context.Context, req *MountRequest) (*MountResponse, error)
	Unmount(ctx context.Context, req *UnmountRequest) error
	Path(ctx context.Context, req *PathRequest) (*PathResponse, error)
	Get(ctx context.Context, req *GetRequest) (*GetResponse, error)
	List(ctx context.Context) (*ListResponse, error)
	Capabilities(ctx context.Context) (*CapabilitiesResponse, error)
}

// Handler serves a Driver as the "VolumeDriver" plugin.Kind.
type Handler struct {
	d       Driver
	methods map[string]plugin.Method
}

var _ plugin.Kind = (*Handler)(nil)

// NewHandler returns a Handler for d.
func NewHandler(d Driver) *Handler {
	if d == nil {
		panic("volume.NewHandler: nil Driver")
	}
	h := &Handler{d: d}
	h.methods = map[string]plugin.Method{
		MethodCreate:       plugin.Handle(h.create),
		MethodRemove:       plugin.Handle(h.remove),
		MethodMount:        plugin.Handle(h.mount),
		MethodUnmount:      plugin.Handle(h.unmount),
		MethodPath:         plugin.Handle(h.path),
		MethodGet:          plugin.Handle(h.get),
		MethodList:         plugin.Handle(h.list),
		MethodCapabilities: plugin.Handle(h.capabilities),
	}
	return h
}

// Implements returns Kind.
func (h *Handler) Implements() string { return Kind }

// Methods returns the eight VolumeDriver methods (a fresh map each call).
func (h *Handler) Methods() map[string]plugin.Method { return maps.Clone(h.methods) }

// Messages do not name the method: the Client (like the daemon) prefixes
// non-200 answers with it.
func needName(name string) error {
	if name == "" {
		return plugin.BadRequest("request has no volume Name")
	}
	return nil
}

func needNameID(name, id string) error {
	if err := needName(name); err != nil {
		return err
	}
	if id == "" {
		return plugin.BadRequest("request for volume %q has no mount ID", name)
	}
	return nil
}

// noArgs is what List and Capabilities decode: the daemon sends {} (or, per
// G19, possibly nothing); anything that is not a JSON object is a 400.
type noArgs struct{}

func (h *Handler) create(ctx context.Context, req *CreateRequest) (any, error) {
	if err := needName(req.Name); err != nil {
		return nil, err
	}
	if req.Opts == nil { // "Opts": null when the user gave no -o
		req.Opts = map[string]string{}
	}
	return nil, h.d.Create(ctx, req)
}

func (h *Handler) remove(ctx context.Context, req *RemoveRequest) (any, error) {
	if err := needName(req.Name); err != nil {
		return nil, err
	}
	return nil, h.d.Remove(ctx, req)
}

func (h *Handler) mount(ctx context.Context, req *MountRequest) (any, error) {
	if err := needNameID(req.Name, req.ID); err != nil {
		return nil, err
	}
	resp, err := h.d.Mount(ctx, req)
	if err != nil {
		return nil, err
	}
	// The daemon would bind-mount "" into the container: fail here, where
	// the message can say whose bug it is.
	if resp == nil || resp.Mountpoint == "" {
		return nil, plugin.Errorf(http.StatusInternalServerError, "volume driver returned no Mountpoint for volume %q", req.Name)
	}
	return resp, nil
}

func (h *Handler) unmount(ctx context.Context, req *UnmountRequest) (any, error) {
	if err := needNameID(req.Name, req.ID); err != nil {
		return nil, err
	}
	return nil, h.d.Unmount(ctx, req)
}

func (h *Handler) path(ctx context.Context, req *PathRequest) (any, error) {
	if err := needName(req.Name); err != nil {
		return nil, err
	}
	return h.d.Path(ctx, req)
}

func (h *Handler) get(ctx context.Context, req *GetRequest) (any, error) {
	if err := needName(req.Name); err != nil {
		return nil, err
	}
	resp, err := h.d.Get(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp == nil || resp.Volume == nil {
		return GetResponse{}, nil // {"Volume":null}: no such volume
	}
	if resp.Volume.Name == "" {
		// The daemon takes the name from the answer, not the request.
		// Copy: the driver may hand out a shared value.
		v := *resp.Volume
		v.Name = req.Name
		return GetResponse{Volume: &v}, nil
	}
	return resp, nil
}

func (h *Handler) list(ctx context.Context, _ *noArgs) (any, error) {
	resp, err := h.d.List(ctx)
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return ListResponse{Volumes: []*Volume{}}, nil
	}
	for i, v := range resp.Volumes {
		if v == nil { // dockerd dereferences every entry
			return nil, plugin.Errorf(http.StatusInternalServerError, "volume driver listed a nil volume at index %d", i)
		}
	}
	if resp.Volumes == nil {
		return ListResponse{Volumes: []*Volume{}}, nil
	}
	return resp, nil
}

func (h *Handler) capabilities(ctx context.Context, _ *noArgs) (any, error) {
	resp, err := h.d.Capabilities(ctx)
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return CapabilitiesResponse{Capabilities: Capability{Scope: ScopeLocal}}, nil
	}
	return resp, nil
}
