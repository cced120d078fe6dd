package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/local"
	"github.com/dockplug/dockplug/volume/mounts"
)

// A reference the daemon will never release (its Mount's answer was lost
// when the plugin died) can be listed and released by the operator.
func TestVolumeRefsAndRelease(t *testing.T) {
	requireRoot(t)
	sock, state := shortDir(t), shortDir(t)
	p := startBinary(t, nil, nil, "serve", "dockplug-volume=vref", "--socket-dir", sock, "--state-dir", state)
	defer p.stop(t)
	addr := "unix://" + filepath.Join(sock, "vref.sock")
	m := waitActivate(t, addr)
	if strings.Join(m.Implements, ",") != volume.Kind {
		t.Fatalf("implements %v, want only %s", m.Implements, volume.Kind)
	}
	pc, _ := plugin.NewClient(addr, plugin.WithBackoff(plugin.Backoff{}))
	defer pc.Close()
	c := volume.NewClient(pc)
	ctx := context.Background()
	if err := c.Create(ctx, &volume.CreateRequest{Name: "stuck"}); err != nil {
		t.Fatal(err)
	}
	mp, err := c.Mount(ctx, &volume.MountRequest{Name: "stuck", ID: "lost"})
	if err != nil {
		t.Fatal(err)
	}
	dp := func(args ...string) (string, error) {
		out, err := exec.Command(binary, append(args, "--state-dir", state, "--name", "vref")...).CombinedOutput()
		return string(out), err
	}
	out, err := dp("volume", "refs", "stuck", "--json")
	var refs local.RefsResponse
	if err != nil || json.Unmarshal([]byte(out), &refs) != nil || refs.Refs["lost"] != 1 || refs.Mountpoint != mp.Mountpoint {
		t.Fatalf("refs: %v\n%s", err, out)
	}
	if err := c.Remove(ctx, &volume.RemoveRequest{Name: "stuck"}); err == nil {
		t.Fatal("removed while referenced")
	}
	if out, err := dp("volume", "release", "stuck", "other"); err == nil || !strings.Contains(out, `no reference with ID "other"`) {
		t.Fatalf("release of an unknown ID: %v\n%s", err, out)
	}
	if out, err := dp("volume", "release", "stuck", "lost"); err != nil || !strings.Contains(out, "MOUNT ID") {
		t.Fatalf("release: %v\n%s", err, out)
	}
	live, _ := mounts.MountPoints()
	if live[mp.Mountpoint] {
		t.Fatal("still mounted after its last reference was released")
	}
	if err := c.Remove(ctx, &volume.RemoveRequest{Name: "stuck"}); err != nil {
		t.Fatal(err)
	}
	if out, err := dp("volume", "refs", "stuck"); err == nil || !strings.Contains(out, "no such volume") {
		t.Fatalf("refs of a removed volume: %v\n%s", err, out)
	}
}
