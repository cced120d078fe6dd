package local

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/mounts"
)

// An empty body, which is what a daemon retry carries once the plugin has
// read the request (plugin.WithDrainedRetry), is refused with a 400 by
// every method that names a volume, and touches no volume, reference or
// mount; List and Capabilities still answer.
func TestEmptyBodiesChangeNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.client.Create(ctx, &volume.CreateRequest{Name: "kept"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Mount(ctx, &volume.MountRequest{Name: "kept", ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	defer e.client.Unmount(ctx, &volume.UnmountRequest{Name: "kept", ID: "c1"})
	state := func() (*volume.ListResponse, []string, bool) {
		t.Helper()
		l, err := e.client.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dirs, _ := filepath.Glob(filepath.Join(e.dir, "*", "*"))
		live, err := mounts.MountPoints()
		if err != nil {
			t.Fatal(err)
		}
		_, mounted := live[e.drv.mountpoint("kept")]
		return l, dirs, mounted
	}
	list, dirs, mounted := state()
	if !mounted {
		t.Fatal("setup: kept is not mounted")
	}

	pc := e.client.Plugin()
	for _, m := range []string{volume.MethodCreate, volume.MethodRemove, volume.MethodMount, volume.MethodUnmount,
		volume.MethodPath, volume.MethodGet, volume.MethodList, volume.MethodCapabilities} {
		for range 2 { // a repeated retry changes nothing either
			_, err := pc.CallRaw(ctx, m, nil)
			switch m {
			case volume.MethodList, volume.MethodCapabilities:
				if err != nil {
					t.Errorf("%s with an empty body: %v", m, err)
				}
			default:
				if statusOf(err) != 400 || err.Error() != m+": request has no volume Name" {
					t.Errorf("%s with an empty body: %v, want 400 and no volume Name", m, err)
				}
			}
		}
	}
	list2, dirs2, mounted2 := state()
	if !reflect.DeepEqual(list2, list) || !reflect.DeepEqual(dirs2, dirs) || !mounted2 {
		t.Fatalf("empty bodies changed the state: %+v %v mounted=%v, was %+v %v", list2, dirs2, mounted2, list, dirs)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "volumes", "_data")); !os.IsNotExist(err) {
		t.Fatalf("a data dir for volume \"\": %v", err)
	}
}
