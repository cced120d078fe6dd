package normalize

import (
	"fmt"
	"regexp"
	"strings"
)

// Body says what a route's JSON body is, for the endpoints whose body
// decides what the daemon will do ("guarded" endpoints).
type Body int

// Guarded bodies. BodyNone: the route's body (if any) does not matter.
const (
	BodyNone Body = iota
	BodyContainerCreate
	BodyContainerUpdate
	BodyExecCreate
	BodyVolumeCreate
	BodyService
	BodyPluginPrivileges // plugin pull (install) and upgrade
	BodyPluginSet
	BodyPluginCreate // a tar stream: never forwarded, so never judged
)

// route is one entry of moby's route table: method, gorilla/mux path
// template, our action name, and the guarded body kind.
type route struct {
	method, path, action string
	body                 Body
}

// routes mirrors moby's daemon/server/router/*/ Routes() in the order
// daemon/command/daemon.go buildRouters registers them (checkpoint first,
// "or the DELETE gets masked"), at moby b985e2313a86 (docker-v29.7.2).
// Order matters: gorilla/mux dispatches to the first route that matches,
// and the {name:.*} patterns overlap.
var routes = []route{
	// checkpoint (experimental: the route matches even when disabled)
	{"GET", "/containers/{name:.*}/checkpoints", "container.checkpoint.list", BodyNone},
	{"POST", "/containers/{name:.*}/checkpoints", "container.checkpoint.create", BodyNone},
	{"DELETE", "/containers/{name}/checkpoints/{checkpoint}", "container.checkpoint.delete", BodyNone},
	// container
	{"HEAD", "/containers/{name:.*}/archive", "container.archive.stat", BodyNone},
	{"GET", "/containers/json", "container.list", BodyNone},
	{"GET", "/containers/{name:.*}/export", "container.export", BodyNone},
	{"GET", "/containers/{name:.*}/changes", "container.changes", BodyNone},
	{"GET", "/containers/{name:.*}/json", "container.inspect", BodyNone},
	{"GET", "/containers/{name:.*}/top", "container.top", BodyNone},
	{"GET", "/containers/{name:.*}/logs", "container.logs", BodyNone},
	{"GET", "/containers/{name:.*}/stats", "container.stats", BodyNone},
	{"GET", "/containers/{name:.*}/attach/ws", "container.attach.ws", BodyNone},
	{"GET", "/exec/{id:.*}/json", "exec.inspect", BodyNone},
	{"GET", "/containers/{name:.*}/archive", "container.archive.get", BodyNone},
	{"POST", "/containers/create", "container.create", BodyContainerCreate},
	{"POST", "/containers/{name:.*}/kill", "container.kill", BodyNone},
	{"POST", "/containers/{name:.*}/pause", "container.pause", BodyNone},
	{"POST", "/containers/{name:.*}/unpause", "container.unpause", BodyNone},
	{"POST", "/containers/{name:.*}/restart", "container.restart", BodyNone},
	{"POST", "/containers/{name:.*}/start", "container.start", BodyNone},
	{"POST", "/containers/{name:.*}/stop", "container.stop", BodyNone},
	{"POST", "/containers/{name:.*}/wait", "container.wait", BodyNone},
	{"POST", "/containers/{name:.*}/resize", "container.resize", BodyNone},
	{"POST", "/containers/{name:.*}/attach", "container.attach", BodyNone},
	{"POST", "/containers/{name:.*}/exec", "container.exec.create", BodyExecCreate},
	{"POST", "/exec/{name:.*}/start", "exec.start", BodyNone},
	{"POST", "/exec/{name:.*}/resize", "exec.resize", BodyNone},
	{"POST", "/containers/{name:.*}/rename", "container.rename", BodyNone},
	{"POST", "/containers/{name:.*}/update", "container.update", BodyContainerUpdate},
	{"POST", "/containers/prune", "container.prune", BodyNone},
	{"POST", "/commit", "container.commit", BodyNone},
	{"PUT", "/containers/{name:.*}/archive", "container.archive.put", BodyNone},
	{"DELETE", "/containers/{name:.*}", "container.delete", BodyNone},
	// image
	{"GET", "/images/json", "image.list", BodyNone},
	{"GET", "/images/search", "image.search", BodyNone},
	{"GET", "/images/get", "image.save", BodyNone},
	{"GET", "/images/{name:.*}/get", "image.save", BodyNone},
	{"GET", "/images/{name:.*}/history", "image.history", BodyNone},
	{"GET", "/images/{name:.*}/json", "image.inspect", BodyNone},
	{"GET", "/images/{name:.*}/attestations", "image.attestations", BodyNone},
	{"POST", "/images/load", "image.load", BodyNone},
	{"POST", "/images/create", "image.create", BodyNone},
	{"POST", "/images/{name:.*}/push", "image.push", BodyNone},
	{"POST", "/images/{name:.*}/tag", "image.tag", BodyNone},
	{"POST", "/images/prune", "image.prune", BodyNone},
	{"DELETE", "/images/{name:.*}", "image.delete", BodyNone},
	// system
	{"OPTIONS", "/{anyroute:.*}", "system.options", BodyNone},
	{"GET", "/_ping", "system.ping", BodyNone},
	{"HEAD", "/_ping", "system.ping", BodyNone},
	{"GET", "/events", "system.events", BodyNone},
	{"GET", "/info", "system.info", BodyNone},
	{"GET", "/version", "system.version", BodyNone},
	{"GET", "/system/df", "system.df", BodyNone},
	{"POST", "/auth", "system.auth", BodyNone},
	// volume
	{"GET", "/volumes", "volume.list", BodyNone},
	{"GET", "/volumes/{name:.*}", "volume.inspect", BodyNone},
	{"POST", "/volumes/create", "volume.create", BodyVolumeCreate},
	{"POST", "/volumes/prune", "volume.prune", BodyNone},
	{"PUT", "/volumes/{name:.*}", "volume.update", BodyNone},
	{"DELETE", "/volumes/{name:.*}", "volume.delete", BodyNone},
	// build
	{"POST", "/build", "build", BodyNone},
	{"POST", "/build/prune", "build.prune", BodyNone},
	{"POST", "/build/cancel", "build.cancel", BodyNone},
	// session (hijacked, for BuildKit)
	{"POST", "/session", "session", BodyNone},
	// swarm
	{"POST", "/swarm/init", "swarm.init", BodyNone},
	{"POST", "/swarm/join", "swarm.join", BodyNone},
	{"POST", "/swarm/leave", "swarm.leave", BodyNone},
	{"GET", "/swarm", "swarm.inspect", BodyNone},
	{"GET", "/swarm/unlockkey", "swarm.unlockkey", BodyNone},
	{"POST", "/swarm/update", "swarm.update", BodyNone},
	{"POST", "/swarm/unlock", "swarm.unlock", BodyNone},
	{"GET", "/services", "service.list", BodyNone},
	{"GET", "/services/{id}", "service.inspect", BodyNone},
	{"POST", "/services/create", "service.create", BodyService},
	{"POST", "/services/{id}/update", "service.update", BodyService},
	{"DELETE", "/services/{id}", "service.delete", BodyNone},
	{"GET", "/services/{id}/logs", "service.logs", BodyNone},
	{"GET", "/nodes", "node.list", BodyNone},
	{"GET", "/nodes/{id}", "node.inspect", BodyNone},
	{"DELETE", "/nodes/{id}", "node.delete", BodyNone},
	{"POST", "/nodes/{id}/update", "node.update", BodyNone},
	{"GET", "/tasks", "task.list", BodyNone},
	{"GET", "/tasks/{id}", "task.inspect", BodyNone},
	{"GET", "/tasks/{id}/logs", "task.logs", BodyNone},
	{"GET", "/secrets", "secret.list", BodyNone},
	{"POST", "/secrets/create", "secret.create", BodyNone},
	{"DELETE", "/secrets/{id}", "secret.delete", BodyNone},
	{"GET", "/secrets/{id}", "secret.inspect", BodyNone},
	{"POST", "/secrets/{id}/update", "secret.update", BodyNone},
	{"GET", "/configs", "config.list", BodyNone},
	{"POST", "/configs/create", "config.create", BodyNone},
	{"DELETE", "/configs/{id}", "config.delete", BodyNone},
	{"GET", "/configs/{id}", "config.inspect", BodyNone},
	{"POST", "/configs/{id}/update", "config.update", BodyNone},
	// plugin
	{"GET", "/plugins", "plugin.list", BodyNone},
	{"GET", "/plugins/{name:.*}/json", "plugin.inspect", BodyNone},
	{"GET", "/plugins/privileges", "plugin.privileges", BodyNone},
	{"DELETE", "/plugins/{name:.*}", "plugin.remove", BodyNone},
	{"POST", "/plugins/{name:.*}/enable", "plugin.enable", BodyNone},
	{"POST", "/plugins/{name:.*}/disable", "plugin.disable", BodyNone},
	{"POST", "/plugins/pull", "plugin.install", BodyPluginPrivileges},
	{"POST", "/plugins/{name:.*}/push", "plugin.push", BodyNone},
	{"POST", "/plugins/{name:.*}/upgrade", "plugin.upgrade", BodyPluginPrivileges},
	{"POST", "/plugins/{name:.*}/set", "plugin.set", BodyPluginSet},
	{"POST", "/plugins/create", "plugin.create", BodyPluginCreate},
	// distribution
	{"GET", "/distribution/{name:.*}/json", "distribution.inspect", BodyNone},
	// network
	{"GET", "/networks", "network.list", BodyNone},
	{"GET", "/networks/", "network.list", BodyNone},
	{"GET", "/networks/{id:.+}", "network.inspect", BodyNone},
	{"POST", "/networks/create", "network.create", BodyNone},
	{"POST", "/networks/{id:.*}/connect", "network.connect", BodyNone},
	{"POST", "/networks/{id:.*}/disconnect", "network.disconnect", BodyNone},
	{"POST", "/networks/prune", "network.prune", BodyNone},
	{"DELETE", "/networks/{id:.*}", "network.delete", BodyNone},
	// debug
	{"GET", "/debug/vars", "debug.vars", BodyNone},
	{"GET", "/debug/pprof/", "debug.pprof", BodyNone},
	{"GET", "/debug/pprof/cmdline", "debug.pprof", BodyNone},
	{"GET", "/debug/pprof/profile", "debug.pprof", BodyNone},
	{"GET", "/debug/pprof/symbol", "debug.pprof", BodyNone},
	{"GET", "/debug/pprof/trace", "debug.pprof", BodyNone},
	{"GET", "/debug/pprof/{name}", "debug.pprof", BodyNone},
	// grpc (hijacked, BuildKit's control API)
	{"POST", "/grpc", "grpc", BodyNone},
}

// versionMatcher is moby's daemon/server/server.go versionMatcher: every
// route is registered twice, with this prefix and without.
const versionMatcher = "/v{version:[0-9.]+}"

// compiled is a route as gorilla/mux matches it.
type compiled struct {
	route
	re    *regexp.Regexp
	names []string // variable names, in group order
}

// table is the mux in registration order: for each route its versioned
// then its unversioned form (CreateMux), then the versioned catch-all that
// answers 404 (no method matcher; nil route).
var table = func() []compiled {
	var t []compiled
	for _, r := range routes {
		t = append(t, mustCompile(r, versionMatcher+r.path), mustCompile(r, r.path))
	}
	t = append(t, mustCompile(route{}, versionMatcher+"/{path:.*}"))
	return t
}()

// mustCompile builds the regexp the way gorilla/mux v1.8.1 newRouteRegexp
// does for a path template: literal parts quoted, each {name[:pattern]}
// a group (default pattern [^/]+), anchored at both ends, no strict slash.
func mustCompile(r route, tpl string) compiled {
	var pat strings.Builder
	var names []string
	pat.WriteByte('^')
	rest := tpl
	for {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			break
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			panic(fmt.Sprintf("normalize: unbalanced braces in %q", tpl))
		}
		end += open
		pat.WriteString(regexp.QuoteMeta(rest[:open]))
		name, p, ok := strings.Cut(rest[open+1:end], ":")
		if !ok {
			p = "[^/]+"
		}
		fmt.Fprintf(&pat, "(?P<v%d>%s)", len(names), p)
		names = append(names, name)
		rest = rest[end+1:]
	}
	pat.WriteString(regexp.QuoteMeta(rest))
	pat.WriteByte('$')
	return compiled{route: r, re: regexp.MustCompile(pat.String()), names: names}
}

// Actions lists every action name the normaliser can produce, for
// documentation and policy linting.
func Actions() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range routes {
		if !seen[r.action] {
			seen[r.action] = true
			out = append(out, r.action)
		}
	}
	return out
}
