// Command hello-volume is the smallest useful volume plugin: every volume
// is a directory under /srv/hello. It is the README's example, kept here so
// it is compiled and vetted with the rest.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
)

type hello struct{}

func dir(name string) string { return filepath.Join("/srv/hello", name) }

func (hello) Create(_ context.Context, r *volume.CreateRequest) error {
	return os.MkdirAll(dir(r.Name), 0o755)
}
func (hello) Remove(_ context.Context, r *volume.RemoveRequest) error {
	return os.RemoveAll(dir(r.Name))
}
func (hello) Mount(_ context.Context, r *volume.MountRequest) (*volume.MountResponse, error) {
	return &volume.MountResponse{Mountpoint: dir(r.Name)}, nil
}
func (hello) Unmount(context.Context, *volume.UnmountRequest) error { return nil }
func (hello) Path(_ context.Context, r *volume.PathRequest) (*volume.PathResponse, error) {
	return &volume.PathResponse{Mountpoint: dir(r.Name)}, nil
}
func (hello) Get(_ context.Context, r *volume.GetRequest) (*volume.GetResponse, error) {
	if _, err := os.Stat(dir(r.Name)); err != nil {
		return nil, plugin.NotFound("no such volume: %s", r.Name) // only when it really does not exist (G2)
	}
	return &volume.GetResponse{Volume: &volume.Volume{Name: r.Name, Mountpoint: dir(r.Name)}}, nil
}
func (hello) List(context.Context) (*volume.ListResponse, error) {
	entries, _ := os.ReadDir("/srv/hello")
	out := &volume.ListResponse{Volumes: []*volume.Volume{}}
	for _, e := range entries {
		out.Volumes = append(out.Volumes, &volume.Volume{Name: e.Name(), Mountpoint: dir(e.Name())})
	}
	return out, nil
}
func (hello) Capabilities(context.Context) (*volume.CapabilitiesResponse, error) {
	return &volume.CapabilitiesResponse{Capabilities: volume.Capability{Scope: volume.ScopeLocal}}, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := plugin.NewServer(plugin.Config{Name: "hello"}, volume.NewHandler(hello{}))
	if err == nil {
		err = srv.Serve(ctx) // /run/docker/plugins/hello.sock, removed on exit
	}
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
}
