package bridge

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/dockplug/dockplug/network"
	"github.com/dockplug/dockplug/store/bolt"
)

// testDriver is a Driver over a temp state file holding one network, built
// without New: CreateEndpoint and the idempotent deletes touch no kernel
// state, so they are tested here; the rest is in e2e/net_*_test.go.
func testDriver(t *testing.T) *Driver {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), string(bucketNetworks), string(bucketEndpoints))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &Driver{cfg: Config{Name: "t"}, log: slog.New(slog.DiscardHandler), db: db,
		nets: map[string]*netRecord{"n1": {ID: "n1", Bridge: "dn-n1", ICC: true, Masquerade: true, IfPrefix: "eth",
			IPv4: []subnet{{Pool: netip.MustParsePrefix("10.9.0.0/24"), Gateway: netip.MustParsePrefix("10.9.0.1/24")}}}},
		eps: map[string]*epRecord{}, reserved: map[string][]*reservation{}}
}

func TestCreateEndpointInterfaceRule(t *testing.T) {
	d := testDriver(t)
	ctx := context.Background()
	// No MAC sent: derive one from the IPv4 address and return only it (G10).
	req := &network.CreateEndpointRequest{NetworkID: "n1", EndpointID: "e1", Interface: &network.EndpointInterface{Address: "10.9.0.7/24"}}
	resp, err := d.CreateEndpoint(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Interface == nil || resp.Interface.MacAddress != "02:42:0a:09:00:07" || resp.Interface.Address != "" {
		t.Errorf("answer %+v", resp.Interface)
	}
	if err := network.CheckInterfaceRule(req.Interface, resp.Interface); err != nil {
		t.Error(err)
	}
	// A MAC sent (user --mac-address, or an IPAM that requires one): answer nothing.
	req = &network.CreateEndpointRequest{NetworkID: "n1", EndpointID: "e2",
		Interface: &network.EndpointInterface{Address: "10.9.0.8/24", MacAddress: "02:00:00:00:00:01"}}
	resp, err = d.CreateEndpoint(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Interface != nil {
		t.Errorf("answered %+v although the daemon sent a MAC", resp.Interface)
	}
	if e := d.eps["e2"]; e.MAC != "02:00:00:00:00:01" || e.HostIf != "dnhe2" || e.PeerIf != "dnce2" {
		t.Errorf("record %+v", e)
	}
	// Durable: a new Driver on the same file sees both endpoints (G8).
	nets, eps, err := loadAll(d.db)
	if err != nil || len(eps) != 2 || len(nets) != 0 {
		t.Errorf("state: %d networks, %d endpoints, %v", len(nets), len(eps), err)
	}
}

func TestCreateEndpointErrors(t *testing.T) {
	d := testDriver(t)
	ctx := context.Background()
	for _, req := range []*network.CreateEndpointRequest{
		{NetworkID: "nope", EndpointID: "e", Interface: &network.EndpointInterface{Address: "10.9.0.7/24"}},
		{NetworkID: "n1", EndpointID: "e", Interface: &network.EndpointInterface{Address: "10.8.0.7/24"}},
		{NetworkID: "n1", EndpointID: "e", Interface: &network.EndpointInterface{}},
		{NetworkID: "n1", EndpointID: "e", Interface: &network.EndpointInterface{Address: "10.9.0.7/24"},
			Options: map[string]any{network.OptionPortMap: []any{map[string]any{"Proto": 1, "Port": 80}}}},
		{NetworkID: "n1", EndpointID: "e", Interface: &network.EndpointInterface{Address: "10.9.0.7/24"},
			Options: map[string]any{network.OptionMacAddress: "not a mac"}},
	} {
		if _, err := d.CreateEndpoint(ctx, req); err == nil {
			t.Errorf("accepted %+v", req)
		}
	}
	if len(d.eps) != 0 {
		t.Errorf("failed calls left endpoints: %v", d.eps)
	}
}

func TestDeletesAreIdempotent(t *testing.T) {
	d := testDriver(t)
	ctx := context.Background()
	if err := d.DeleteEndpoint(ctx, &network.DeleteEndpointRequest{NetworkID: "n1", EndpointID: "never"}); err != nil {
		t.Error(err)
	}
	if err := d.DeleteNetwork(ctx, &network.DeleteNetworkRequest{NetworkID: "never"}); err != nil {
		t.Error(err)
	}
	if err := d.Leave(ctx, &network.LeaveRequest{NetworkID: "n1", EndpointID: "never"}); err != nil {
		t.Error(err)
	}
	if err := d.RevokeExternalConnectivity(ctx, &network.RevokeExternalConnectivityRequest{NetworkID: "n1", EndpointID: "never"}); err != nil {
		t.Error(err)
	}
	if _, err := d.Join(ctx, &network.JoinRequest{NetworkID: "n1", EndpointID: "never", SandboxKey: "/x"}); err == nil {
		t.Error("Join of an unknown endpoint succeeded")
	}
}
