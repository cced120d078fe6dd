package driver

import (
	"context"
	"reflect"
	"testing"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

// An empty body, which is what a daemon retry carries once the plugin has
// read the request (plugin.WithDrainedRetry), is refused with a 400 by
// every method that takes arguments, and changes no pool or address; the
// argument-less methods still answer.
func TestEmptyBodiesChangeNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.pool(t, LocalSpace, "10.30.0.0/24", "", false)
	if _, err := f.addr(p.PoolID, "", nil); err != nil {
		t.Fatal(err)
	}
	state := func() (pools *PoolsResponse, pool *PoolResponse) {
		t.Helper()
		pools, err := f.admin.Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pool, err = f.admin.Pool(ctx, p.PoolID); err != nil {
			t.Fatal(err)
		}
		return pools, pool
	}
	pools, pool := state()

	// The driver behind a second socket, for raw calls with no body.
	pc := plugintest.Serve(t, "ipamempty", ipam.NewHandler(f.drv)).Client
	for _, tc := range []struct{ method, err string }{
		{ipam.MethodGetCapabilities, ""},
		{ipam.MethodGetDefaultAddressSpaces, ""},
		{ipam.MethodRequestPool, "request has no body"},
		{ipam.MethodReleasePool, "PoolID is required"},
		{ipam.MethodRequestAddress, "PoolID is required"},
		{ipam.MethodReleaseAddress, "PoolID is required"},
	} {
		for range 2 { // a repeated retry changes nothing either
			_, err := pc.CallRaw(ctx, tc.method, nil)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("%s with an empty body: %v", tc.method, err)
			case tc.err != "" && (status(err) != 400 || err.Error() != tc.method+": "+tc.err):
				t.Errorf("%s with an empty body: %v, want 400 %q", tc.method, err, tc.err)
			}
		}
	}
	if pools2, pool2 := state(); !reflect.DeepEqual(pools2, pools) || !reflect.DeepEqual(pool2, pool) {
		t.Fatalf("empty bodies changed the state:\n%+v %+v\nwas\n%+v %+v", pools2, pool2, pools, pool)
	}
}
