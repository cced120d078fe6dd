package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/internal/dockertest"
	"github.com/dockplug/dockplug/network"
)

// What each engine sends to plugins, stated per engine. Each finding is a
// line of the README's compatibility table.

func engine() dockertest.Engine { return daemon.Engine }

// TestEngineNetworkCalls records what the daemon asks of a network driver
// that reports GwAllocChecker, over a container's life on two networks.
func TestEngineNetworkCalls(t *testing.T) {
	need(t)
	name := "dpnet-" + randHex(4)
	rec := newNetRecorder(network.Capabilities{Scope: network.ScopeLocal, GwAllocChecker: true})
	serveKinds(t, name, 0, network.NewHandler(rec))

	ctx := context.Background()
	nets := []string{name + "-a", name + "-b"}
	for _, n := range nets {
		daemon.MustDocker(t, "network", "create", "-d", name, "--subnet", freeSubnet(t).String(), n)
		t.Cleanup(func() { daemon.Docker(ctx, "network", "rm", n) })
	}
	c := name + "-c"
	t.Cleanup(func() { daemon.Docker(ctx, "rm", "-f", c) })
	daemon.MustDocker(t, "run", "-d", "--name", c, "--network", nets[0], image, "sleep", "300")
	daemon.MustDocker(t, "network", "connect", nets[1], c)
	out := daemon.MustDocker(t, "exec", c, "ip", "-4", "-o", "addr")
	if !strings.Contains(out, "eth0") || !strings.Contains(out, "eth1") {
		t.Errorf("container interfaces: %s", out)
	}
	daemon.MustDocker(t, "rm", "-f", c)
	for _, n := range nets {
		daemon.MustDocker(t, "network", "rm", n)
	}
	if !waitFor(30*time.Second, func() bool { return len(leftoverVeths()) == 0 }) {
		t.Errorf("veths left: %v", leftoverVeths())
	}
	for _, cl := range rec.Calls("") {
		b, _ := json.Marshal(cl.Req)
		t.Logf("%s %s", cl.Method, b)
	}

	// GwAllocCheck: Engine 29 asks before each network's IPAM allocation,
	// with CreateNetwork's options; 20.10 never does.
	gw := rec.Calls("GwAllocCheck")
	switch engine() {
	case dockertest.Engine29:
		if len(gw) != len(nets) {
			t.Errorf("Engine 29: %d GwAllocCheck calls, want %d", len(gw), len(nets))
		}
		for _, c := range gw {
			if v := c.Req.(*network.GwAllocCheckRequest).Options[network.OptionEnableIPv4]; v != true {
				t.Errorf("GwAllocCheck options: %s = %v, want true", network.OptionEnableIPv4, v)
			}
		}
	default:
		if len(gw) != 0 {
			t.Errorf("20.10: %d GwAllocCheck calls, want none", len(gw))
		}
	}
	// CreateNetwork carries enable_ipv4 only on Engine 29.
	for _, c := range rec.Calls("CreateNetwork") {
		_, has := c.Req.(*network.CreateNetworkRequest).Options[network.OptionEnableIPv4]
		if has != (engine() == dockertest.Engine29) {
			t.Errorf("engine %s: CreateNetwork has %s: %v", engine(), network.OptionEnableIPv4, has)
		}
	}

	// External connectivity: on both engines the first network's endpoint
	// becomes the gateway when the container starts, and connecting a
	// second network leaves it so. At removal 20.10 hands the gateway role
	// to the second endpoint for a moment (Program, then Revoke); Engine 29
	// tells only the endpoint that really was the gateway.
	netID := map[string]string{}
	for i, c := range rec.Calls("CreateNetwork") {
		netID[c.Req.(*network.CreateNetworkRequest).NetworkID] = string(rune('a' + i))
	}
	var ext []string
	for _, c := range rec.Calls("") {
		switch r := c.Req.(type) {
		case *network.ProgramExternalConnectivityRequest:
			ext = append(ext, "program "+netID[r.NetworkID])
		case *network.RevokeExternalConnectivityRequest:
			ext = append(ext, "revoke "+netID[r.NetworkID])
		}
	}
	want := []string{"program a", "revoke a"}
	if engine() == dockertest.Engine2010 {
		want = append(want, "program b", "revoke b")
	}
	if !slices.Equal(ext, want) {
		t.Errorf("engine %s: external connectivity calls %v, want %v", engine(), ext, want)
	}
}

// TestEngineAuthzBodies sends container-create bodies of growing size
// through a daemon whose authorization chain holds a recording plugin, and
// records what the plugin receives (G14).
func TestEngineAuthzBodies(t *testing.T) {
	need(t)
	name := "dpauthz-" + randHex(4)
	rec := &authzRecorder{}
	// Big enough for the base64 of any body the daemon may forward.
	serveKinds(t, name, 64<<20, authz.NewHandler(rec))
	d := dockertest.Start(t, dockertest.WithEngine(engine()), dockertest.WithFlags("--authorization-plugin="+name))

	for _, size := range []int{1 << 10, 2 << 20, 5 << 20} {
		tag := fmt.Sprintf("size%d", size)
		body := createBody(size)
		req, _ := http.NewRequest(http.MethodPost, dockertest.APIBaseURL+"/v1.41/containers/create?name="+tag, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := d.Client().Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var got *authz.Request
		for _, c := range rec.Calls("AuthZReq") {
			if r := c.Req.(*authz.Request); strings.Contains(r.RequestURI, "name="+tag) {
				got = r
			}
		}
		t.Logf("%s (%d bytes): status %d %s; plugin asked: %v", tag, len(body), resp.StatusCode, bytes.TrimSpace(msg), got != nil)

		// Up to 1 MiB both engines forward the body; 20.10 silently drops
		// anything larger (the plugin decides on a request without a
		// body: CVE-2024-41110's class). Engine 29 forwards up to 4 MiB
		// and refuses the request above, without asking the plugin.
		switch {
		case size <= 1<<20 || (engine() == dockertest.Engine29 && size <= 4<<20):
			if got == nil || !bytes.Equal(got.RequestBody, body) {
				t.Errorf("engine %s, %s: plugin did not get the whole body (asked: %v)", engine(), tag, got != nil)
			}
		case engine() == dockertest.Engine29:
			if got != nil || resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(msg), "request body too large for authorization plugin") {
				t.Errorf("Engine 29, %s: status %d %s, plugin asked %v; want a 500 'request body too large' and no AuthZReq", tag, resp.StatusCode, msg, got != nil)
			}
		default:
			if got == nil || len(got.RequestBody) != 0 {
				t.Errorf("20.10, %s: want the plugin asked without a body (asked: %v)", tag, got != nil)
			} else if resp.StatusCode != http.StatusNotFound {
				t.Errorf("20.10, %s: status %d %s, want the daemon's own 404 (no such image)", tag, resp.StatusCode, msg)
			}
		}
	}
}

// createBody is a container-create body of about size bytes: the bulk is
// one label.
func createBody(size int) []byte {
	b, _ := json.Marshal(map[string]any{
		"Image":  "dockplug-no-such-image:none",
		"Labels": map[string]string{"pad": strings.Repeat("x", size)},
	})
	return b
}
