package local

import (
	"context"

	"github.com/dockplug/dockplug/plugin"
)

// AdminKind is what Plugin.Activate lists on the admin socket, which serves
// Admin: `dockplug volume` asks the running plugin there (its state file
// admits one process) to show and clear mount references. The admin methods
// are not part of the protocol the daemon speaks: serve them on a socket of
// their own, never next to VolumeDriver on the socket the daemon uses.
const AdminKind = "dockplug.volume-admin"

// Admin method names.
const (
	MethodRefs    = "DockplugVolume.Refs"
	MethodRelease = "DockplugVolume.Release"
)

// RefsRequest names a volume.
type RefsRequest struct {
	Name string `json:"name"`
}

// RefsResponse lists a volume's references: mount ID -> count.
type RefsResponse struct {
	Name       string         `json:"name"`
	Mountpoint string         `json:"mountpoint"`
	Refs       map[string]int `json:"refs"`
}

// ReleaseRequest drops one reference of (Name, ID), as an Unmount would.
type ReleaseRequest struct {
	Name string `json:"name"`
	ID   string `json:"id"`
}

type admin struct{ d *Driver }

// Admin returns the Kind serving the admin methods, for the admin socket.
func (d *Driver) Admin() plugin.Kind { return admin{d} }

func (a admin) Implements() string { return AdminKind }

func (a admin) Methods() map[string]plugin.Method {
	return map[string]plugin.Method{
		MethodRefs: plugin.Handle(func(ctx context.Context, r *RefsRequest) (*RefsResponse, error) {
			if err := a.exists(r.Name); err != nil {
				return nil, err
			}
			refs, err := a.d.mounts.Refs(r.Name)
			if err != nil {
				return nil, err
			}
			return &RefsResponse{Name: r.Name, Mountpoint: a.d.mountpoint(r.Name), Refs: refs}, nil
		}),
		// Release clears a reference the daemon will never release: one
		// recorded by a Mount whose answer was lost when the plugin died,
		// or left by an Unmount the plugin died in before recording it.
		MethodRelease: plugin.Handle(func(ctx context.Context, r *ReleaseRequest) (*RefsResponse, error) {
			if err := a.exists(r.Name); err != nil {
				return nil, err
			}
			a.d.mu.Lock()
			refs, err := a.d.mounts.Refs(r.Name)
			if err == nil && refs[r.ID] == 0 {
				err = plugin.NotFound("volume %s holds no reference with ID %q", r.Name, r.ID)
			}
			if err == nil {
				err = a.d.mounts.Unmount(ctx, r.Name, r.ID)
			}
			a.d.mu.Unlock()
			if err != nil {
				return nil, err
			}
			refs, err = a.d.mounts.Refs(r.Name)
			if err != nil {
				return nil, err
			}
			return &RefsResponse{Name: r.Name, Mountpoint: a.d.mountpoint(r.Name), Refs: refs}, nil
		}),
	}
}

func (a admin) exists(name string) error {
	if name == "" {
		return plugin.BadRequest("no volume name given")
	}
	r, err := a.d.load(name)
	if err != nil {
		return err
	}
	if r == nil {
		return plugin.NotFound("no such volume: %s", name)
	}
	return nil
}

// AdminClient calls the admin methods of a running plugin, through a
// client of its admin socket.
type AdminClient struct{ c *plugin.Client }

// NewAdminClient wraps a plugin client.
func NewAdminClient(c *plugin.Client) *AdminClient { return &AdminClient{c} }

// Refs lists a volume's mount references.
func (a *AdminClient) Refs(ctx context.Context, name string) (*RefsResponse, error) {
	var out RefsResponse
	return &out, a.c.Call(ctx, MethodRefs, RefsRequest{Name: name}, &out)
}

// Release drops one reference of (name, id).
func (a *AdminClient) Release(ctx context.Context, name, id string) (*RefsResponse, error) {
	var out RefsResponse
	return &out, a.c.Call(ctx, MethodRelease, ReleaseRequest{Name: name, ID: id}, &out)
}
