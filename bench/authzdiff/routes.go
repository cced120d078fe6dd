// Package authzdiff is the differential test of dockplug-authz's request
// normaliser (authz/normalize) against the daemon's real router: moby
// v28.5.2's api/server/router/* route lists, registered on gorilla/mux
// exactly as its api/server.(*Server).CreateMux does.
package authzdiff

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/docker/docker/api/server/router"
	"github.com/docker/docker/api/server/router/build"
	checkpointrouter "github.com/docker/docker/api/server/router/checkpoint"
	"github.com/docker/docker/api/server/router/container"
	debugrouter "github.com/docker/docker/api/server/router/debug"
	distributionrouter "github.com/docker/docker/api/server/router/distribution"
	grpcrouter "github.com/docker/docker/api/server/router/grpc"
	"github.com/docker/docker/api/server/router/image"
	"github.com/docker/docker/api/server/router/network"
	pluginrouter "github.com/docker/docker/api/server/router/plugin"
	sessionrouter "github.com/docker/docker/api/server/router/session"
	swarmrouter "github.com/docker/docker/api/server/router/swarm"
	systemrouter "github.com/docker/docker/api/server/router/system"
	"github.com/docker/docker/api/server/router/volume"
	"github.com/docker/docker/runconfig"
	"github.com/gorilla/mux"
)

// Routers returns moby v28.5.2's routers in the order its
// cmd/dockerd/daemon.go buildRouters registers them ("we need to add the
// checkpoint router before the container router or the DELETE gets
// masked"), with nil backends: only their route lists are used, never a
// handler.
func Routers() []router.Router {
	decoder := runconfig.ContainerDecoder{}
	return []router.Router{
		checkpointrouter.NewRouter(nil, decoder),
		container.NewRouter(nil, decoder, true),
		image.NewRouter(nil, nil),
		systemrouter.NewRouter(nil, nil, nil, nil),
		volume.NewRouter(nil, nil),
		build.NewRouter(nil, nil),
		sessionrouter.NewRouter(nil),
		swarmrouter.NewRouter(nil),
		pluginrouter.NewRouter(nil),
		distributionrouter.NewRouter(nil),
		network.NewRouter(nil, nil),
		debugrouter.NewRouter(),
		grpcrouter.NewRouter(), // registered whenever BuildKit is (always on Linux)
	}
}

// versionMatcher is api/server/server.go's.
const versionMatcher = "/v{version:[0-9.]+}"

// Dispatch is where the daemon's router sends a request.
type Dispatch struct {
	// Served: a route's handler runs (and the authorization middleware
	// with it, consulting the plugin). False for 404s, method mismatches,
	// gorilla's clean-path redirects and targets net/http refuses.
	Served bool
	Method string            // the route's method
	Path   string            // the route's path template, without the version prefix
	Vars   map[string]string // mux.Vars, version included
	Status int               // when not served: the status the daemon answers
}

// Router is moby's mux: every route registered twice, with the version
// prefix and without (CreateMux), then the versioned catch-all and the
// NotFound/MethodNotAllowed handlers. Each handler records its route
// instead of running it.
type Router struct {
	m *mux.Router
}

type dispatchKey struct{}

// NewRouter builds the mux from routers.
func NewRouter(routers []router.Router) *Router {
	m := mux.NewRouter()
	for _, apiRouter := range routers {
		for _, r := range apiRouter.Routes() {
			method, path := r.Method(), r.Path()
			f := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				d := req.Context().Value(dispatchKey{}).(*Dispatch)
				d.Served, d.Method, d.Path, d.Vars = true, method, path, mux.Vars(req)
			})
			m.Path(versionMatcher + path).Methods(method).Handler(f)
			m.Path(path).Methods(method).Handler(f)
		}
	}
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) })
	m.HandleFunc(versionMatcher+"/{path:.*}", notFound)
	m.NotFoundHandler = notFound
	m.MethodNotAllowedHandler = notFound
	return &Router{m: m}
}

// Route sends method and the raw request target through net/http's
// request parsing (what the daemon's http.Server does before any handler)
// and the mux.
func (rt *Router) Route(method, target string) (Dispatch, *http.Request) {
	raw := method + " " + target + " HTTP/1.1\r\nHost: docker\r\n\r\n"
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return Dispatch{Status: http.StatusBadRequest}, nil
	}
	d := &Dispatch{}
	rec := httptest.NewRecorder()
	rt.m.ServeHTTP(rec, req.WithContext(contextWith(req, d)))
	if !d.Served {
		d.Status = rec.Code
	}
	return *d, req
}
