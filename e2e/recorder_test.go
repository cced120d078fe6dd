package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/network"
	"github.com/dockplug/dockplug/plugin"
)

// Recording stand-ins: minimal plugins served from the test process that
// log every call the real daemon makes, so a test can state what each
// engine sends. They are test doubles of a plugin, never of the daemon.

// call is one request a recorder received.
type call struct {
	Method string
	Req    any
}

type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) record(method string, req any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{method, req})
}

// Calls returns the calls of one method ("" for all), in order.
func (r *recorder) Calls(method string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// serveKinds serves kinds as a v1 plugin named name in /run/docker/plugins
// until the test ends; the socket is gone when it returns from cleanup.
func serveKinds(t *testing.T, name string, maxBody int64, kinds ...plugin.Kind) {
	t.Helper()
	srv, err := plugin.NewServer(plugin.Config{Name: name, MaxBodyBytes: maxBody}, kinds...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	startedMu.Lock()
	started = append(started, name)
	startedMu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("recorder %s: %v", name, err)
		}
	})
}

// netRecorder is a network driver that records every call. Join creates a
// veth pair (with the ip tool: test code only) whose host end the daemon
// moves into the container, and returns the pool's first address as the
// gateway so no docker_gwbridge is attached.
type netRecorder struct {
	recorder
	caps network.Capabilities

	mu   sync.Mutex
	gw   map[string]string // network ID -> gateway IP
	veth map[string]string // endpoint ID -> host-side peer name
}

func newNetRecorder(caps network.Capabilities) *netRecorder {
	return &netRecorder{caps: caps, gw: map[string]string{}, veth: map[string]string{}}
}

func (n *netRecorder) GetCapabilities(context.Context) (*network.Capabilities, error) {
	n.record("GetCapabilities", nil)
	c := n.caps
	return &c, nil
}

func (n *netRecorder) GwAllocCheck(_ context.Context, r *network.GwAllocCheckRequest) (*network.GwAllocCheckResponse, error) {
	n.record("GwAllocCheck", r)
	return &network.GwAllocCheckResponse{}, nil
}

func (n *netRecorder) CreateNetwork(_ context.Context, r *network.CreateNetworkRequest) error {
	n.record("CreateNetwork", r)
	for _, d := range r.IPv4Data {
		if gw, _, ok := strings.Cut(d.Gateway, "/"); ok {
			n.mu.Lock()
			n.gw[r.NetworkID] = gw
			n.mu.Unlock()
		}
	}
	return nil
}

func (n *netRecorder) DeleteNetwork(_ context.Context, r *network.DeleteNetworkRequest) error {
	n.record("DeleteNetwork", r)
	return nil
}

func (n *netRecorder) CreateEndpoint(_ context.Context, r *network.CreateEndpointRequest) (*network.CreateEndpointResponse, error) {
	n.record("CreateEndpoint", r)
	return nil, nil
}

func (n *netRecorder) EndpointOperInfo(_ context.Context, r *network.EndpointOperInfoRequest) (*network.EndpointOperInfoResponse, error) {
	n.record("EndpointOperInfo", r)
	return &network.EndpointOperInfoResponse{Value: map[string]any{}}, nil
}

func (n *netRecorder) DeleteEndpoint(ctx context.Context, r *network.DeleteEndpointRequest) error {
	n.record("DeleteEndpoint", r)
	n.mu.Lock()
	peer := n.veth[r.EndpointID]
	delete(n.veth, r.EndpointID)
	n.mu.Unlock()
	if peer != "" {
		// Deleting the host end removes both ends (4.3).
		_ = exec.CommandContext(ctx, "ip", "link", "del", peer).Run()
	}
	return nil
}

func (n *netRecorder) Join(ctx context.Context, r *network.JoinRequest) (*network.JoinResponse, error) {
	n.record("Join", r)
	id := r.EndpointID[:8]
	src, peer := "dpc"+id, "dph"+id
	if out, err := exec.CommandContext(ctx, "ip", "link", "add", src, "type", "veth", "peer", "name", peer).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("veth: %v: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "ip", "link", "set", peer, "up").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("veth up: %v: %s", err, out)
	}
	n.mu.Lock()
	n.veth[r.EndpointID] = peer
	gw := n.gw[r.NetworkID]
	n.mu.Unlock()
	return &network.JoinResponse{
		InterfaceName: &network.InterfaceName{SrcName: src, DstPrefix: "eth"},
		Gateway:       gw,
	}, nil
}

func (n *netRecorder) Leave(_ context.Context, r *network.LeaveRequest) error {
	n.record("Leave", r)
	return nil
}

func (n *netRecorder) ProgramExternalConnectivity(_ context.Context, r *network.ProgramExternalConnectivityRequest) error {
	n.record("ProgramExternalConnectivity", r)
	return nil
}

func (n *netRecorder) RevokeExternalConnectivity(_ context.Context, r *network.RevokeExternalConnectivityRequest) error {
	n.record("RevokeExternalConnectivity", r)
	return nil
}

// leftoverVeths lists host links a netRecorder created that still exist.
func leftoverVeths() []string {
	ifs, _ := net.Interfaces()
	var out []string
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, "dph") || strings.HasPrefix(i.Name, "dpc") {
			out = append(out, i.Name)
		}
	}
	return out
}

// authzRecorder allows everything and records each AuthZReq.
type authzRecorder struct{ recorder }

func (a *authzRecorder) AuthZReq(_ context.Context, r *authz.Request) (*authz.Response, error) {
	a.record("AuthZReq", r)
	return &authz.Response{Allow: true}, nil
}

func (a *authzRecorder) AuthZRes(_ context.Context, r *authz.Request) (*authz.Response, error) {
	a.record("AuthZRes", r)
	return &authz.Response{Allow: true}, nil
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
