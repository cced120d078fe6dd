package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	helpers "github.com/docker/go-plugins-helpers/volume"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
)

// The call under test, as dockerd sends it (docker-plugin-protocol.md §2.1):
// POST, json.Encoder body with its trailing newline, Accept v1.2, no
// Content-Type, Host plugin.moby.localhost.
const (
	getURL  = "http://plugin.moby.localhost/" + volume.MethodGet
	getBody = `{"Name":"vol"}` + "\n"
	// wantBody is the answer every server must give (TestServersAnswerTheSame).
	wantBody = `{"Volume":{"Name":"vol","Mountpoint":"/x"}}` + "\n"
)

// serverNames is the order servers are measured in within a round.
var serverNames = []string{"dockplug", "helpers", "raw"}

// servers are the three implementations under test, each on its own unix
// socket in one directory.
type servers struct {
	dir      string
	registry *prometheus.Registry // dockplug's metrics, to check they are on
	stop     []func()
}

func (s *servers) socket(name string) string { return socketPath(s.dir, name) }

// socketPath is where server name listens in dir.
func socketPath(dir, name string) string { return filepath.Join(dir, name+".sock") }

// Close stops the servers and removes their sockets.
func (s *servers) Close() {
	for i := len(s.stop) - 1; i >= 0; i-- {
		s.stop[i]()
	}
	s.stop = nil
}

// startServers starts dockplug, helpers and raw on dir/NAME.sock and returns
// once all three accept connections.
func startServers(dir string) (_ *servers, err error) {
	s := &servers{dir: dir}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	// (a) dockplug as production runs it: metrics and a real logger on.
	s.registry = prometheus.NewRegistry()
	dp, err := plugin.NewServer(plugin.Config{
		Name:      "dockplug",
		SocketDir: dir,
		Metrics:   plugin.NewMetrics(s.registry),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, volume.NewHandler(noopDriver{}))
	if err != nil {
		return nil, err
	}
	if err := dp.Listen(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	dpDone := make(chan struct{})
	go func() { dp.Serve(ctx); close(dpDone) }()
	s.stop = append(s.stop, func() { cancel(); <-dpDone })

	// (b) go-plugins-helpers, on a listener we make so we choose the path
	// (ServeUnix would put it under /run/docker/plugins). Its handler keeps
	// its http.Server to itself: closing the listener is all the stopping
	// there is; connections left open die with their clients.
	hl, err := net.Listen("unix", s.socket("helpers"))
	if err != nil {
		return nil, err
	}
	go helpers.NewHandler(helpersDriver{}).Serve(hl)
	s.stop = append(s.stop, func() { hl.Close() })

	// (c) the floor: plain net/http, decode, encode.
	rl, err := net.Listen("unix", s.socket("raw"))
	if err != nil {
		return nil, err
	}
	rs := &http.Server{Handler: http.HandlerFunc(rawGet)}
	go rs.Serve(rl)
	s.stop = append(s.stop, func() { rs.Close() })

	for _, name := range serverNames {
		if err := waitSocket(s.socket(name)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func waitSocket(path string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server at %s never answered: %w", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawGet is what a hand-written plugin with no SDK would do.
func rawGet(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/"+volume.MethodGet {
		http.NotFound(w, r)
		return
	}
	var req struct{ Name string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	type vol struct {
		Name       string
		Mountpoint string `json:",omitempty"`
	}
	w.Header().Set("Content-Type", plugin.MediaType)
	json.NewEncoder(w).Encode(struct{ Volume *vol }{&vol{Name: req.Name, Mountpoint: "/x"}})
}

// noopDriver is dockplug's no-op volume driver: Get answers any name.
type noopDriver struct{}

func (noopDriver) Create(context.Context, *volume.CreateRequest) error { return nil }
func (noopDriver) Remove(context.Context, *volume.RemoveRequest) error { return nil }
func (noopDriver) Mount(context.Context, *volume.MountRequest) (*volume.MountResponse, error) {
	return &volume.MountResponse{Mountpoint: "/x"}, nil
}
func (noopDriver) Unmount(context.Context, *volume.UnmountRequest) error { return nil }
func (noopDriver) Path(context.Context, *volume.PathRequest) (*volume.PathResponse, error) {
	return &volume.PathResponse{Mountpoint: "/x"}, nil
}
func (noopDriver) Get(_ context.Context, req *volume.GetRequest) (*volume.GetResponse, error) {
	return &volume.GetResponse{Volume: &volume.Volume{Name: req.Name, Mountpoint: "/x"}}, nil
}
func (noopDriver) List(context.Context) (*volume.ListResponse, error) {
	return &volume.ListResponse{}, nil
}
func (noopDriver) Capabilities(context.Context) (*volume.CapabilitiesResponse, error) {
	return nil, nil
}

// helpersDriver is the same driver for go-plugins-helpers.
type helpersDriver struct{}

func (helpersDriver) Create(*helpers.CreateRequest) error { return nil }
func (helpersDriver) List() (*helpers.ListResponse, error) {
	return &helpers.ListResponse{}, nil
}
func (helpersDriver) Get(req *helpers.GetRequest) (*helpers.GetResponse, error) {
	return &helpers.GetResponse{Volume: &helpers.Volume{Name: req.Name, Mountpoint: "/x"}}, nil
}
func (helpersDriver) Remove(*helpers.RemoveRequest) error { return nil }
func (helpersDriver) Path(*helpers.PathRequest) (*helpers.PathResponse, error) {
	return &helpers.PathResponse{Mountpoint: "/x"}, nil
}
func (helpersDriver) Mount(*helpers.MountRequest) (*helpers.MountResponse, error) {
	return &helpers.MountResponse{Mountpoint: "/x"}, nil
}
func (helpersDriver) Unmount(*helpers.UnmountRequest) error { return nil }
func (helpersDriver) Capabilities() *helpers.CapabilitiesResponse {
	return &helpers.CapabilitiesResponse{Capabilities: helpers.Capability{Scope: "local"}}
}

// newClient is a keep-alive client to one socket, set up like the daemon's
// (pkg/plugins: no compression on unix sockets, 30 s idle timeout) but with
// as many idle connections as there are concurrent callers, so no call
// pays for a dial once warm.
func newClient(sock string, conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}}
}

// callGet makes one Get call and reads the whole answer into buf. It builds
// a new request each time, as the daemon does.
func callGet(c *http.Client, buf *bytes.Buffer) error {
	req, err := http.NewRequest(http.MethodPost, getURL, strings.NewReader(getBody))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", plugin.MediaType)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(buf.Bytes()))
	}
	if buf.Len() != len(wantBody) {
		return errors.New("unexpected answer: " + buf.String())
	}
	return nil
}
