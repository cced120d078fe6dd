package volume_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/plugin/plugintest"
	"github.com/dockplug/dockplug/volume"
)

// tmpfsDriver pretends to keep volumes in memory.
type tmpfsDriver struct {
	mu   sync.Mutex
	vols map[string]bool
}

func (d *tmpfsDriver) Create(_ context.Context, r *volume.CreateRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.vols[r.Name] = true
	return nil
}

func (d *tmpfsDriver) Remove(_ context.Context, r *volume.RemoveRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.vols, r.Name)
	return nil
}

func (d *tmpfsDriver) Mount(_ context.Context, r *volume.MountRequest) (*volume.MountResponse, error) {
	return &volume.MountResponse{Mountpoint: "/var/lib/tmpfs/" + r.Name}, nil
}

func (d *tmpfsDriver) Unmount(context.Context, *volume.UnmountRequest) error { return nil }

func (d *tmpfsDriver) Path(_ context.Context, r *volume.PathRequest) (*volume.PathResponse, error) {
	return &volume.PathResponse{Mountpoint: "/var/lib/tmpfs/" + r.Name}, nil
}

func (d *tmpfsDriver) Get(_ context.Context, r *volume.GetRequest) (*volume.GetResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.vols[r.Name] {
		return &volume.GetResponse{}, nil // null Volume: it really does not exist
	}
	return &volume.GetResponse{Volume: &volume.Volume{Name: r.Name}}, nil
}

func (d *tmpfsDriver) List(context.Context) (*volume.ListResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := &volume.ListResponse{}
	for n := range d.vols {
		l.Volumes = append(l.Volumes, &volume.Volume{Name: n})
	}
	return l, nil
}

func (d *tmpfsDriver) Capabilities(context.Context) (*volume.CapabilitiesResponse, error) {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: volume.ScopeLocal}}, nil
}

func Example() {
	r := plugintest.Must(plugintest.Start("tmpfs", volume.NewHandler(&tmpfsDriver{vols: map[string]bool{}})))
	defer os.RemoveAll(r.SocketDir)
	defer r.Stop()

	ctx := context.Background()
	c := volume.NewClient(r.Client)

	_, err := c.Get(ctx, &volume.GetRequest{Name: "data"})
	fmt.Println("before create:", err, volume.IsNoSuchVolume(err))

	if err := c.Create(ctx, &volume.CreateRequest{Name: "data"}); err != nil {
		fmt.Println(err)
	}
	m, err := c.Mount(ctx, &volume.MountRequest{Name: "data", ID: "0123abcd"})
	fmt.Println("mounted at:", m.Mountpoint, err)

	// The daemon always sends an ID; the Handler refuses a Mount without.
	_, err = c.Mount(ctx, &volume.MountRequest{Name: "data"})
	var se *plugin.StatusError
	if errors.As(err, &se) {
		fmt.Println(se.Status, err)
	}

	caps, _ := c.Capabilities(ctx)
	fmt.Println("scope:", caps.Capabilities.Scope)
	// Output:
	// before create: no such volume true
	// mounted at: /var/lib/tmpfs/data <nil>
	// 400 VolumeDriver.Mount: request for volume "data" has no mount ID
	// scope: local
}
