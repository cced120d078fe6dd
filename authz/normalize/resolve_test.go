package normalize

import "testing"

// Each case is a request target and what moby's router (gorilla/mux v1.8.1
// over daemon/server/router/*, cleaning on, decoded-path matching) does
// with it; see resolve.go for the sources.
func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		method, uri, action string
		params              map[string]string
		version             string
	}{
		{"POST", "/v1.41/containers/create", "container.create", nil, "1.41"},
		{"POST", "/containers/create", "container.create", nil, ""},
		// versionMatcher is [0-9.]+: any digits and dots.
		{"POST", "/v1/containers/create", "container.create", nil, "1"},
		{"POST", "/v1.2.3.4/containers/create", "container.create", nil, "1.2.3.4"},
		{"POST", "/v.../containers/create", "container.create", nil, "..."},
		{"POST", "/v00001.041/containers/create", "container.create", nil, "00001.041"},
		{"POST", "/V1.41/containers/create", "", nil, ""},
		{"POST", "/v1.41a/containers/create", "", nil, ""},
		// the router matches the decoded path
		{"POST", "/v1.41/containers/%63reate", "container.create", nil, "1.41"},
		{"POST", "/%761.41/containers/create", "container.create", nil, "1.41"},
		{"POST", "/v1%2E41/containers/create", "container.create", nil, "1.41"},
		// absolute form, any scheme case
		{"POST", "http://docker/v1.41/containers/create", "container.create", nil, "1.41"},
		{"POST", "HTTP://docker/containers/create?name=x", "container.create", nil, ""},
		{"POST", "/v1.41/containers/create?name=web", "container.create", nil, "1.41"},
		// cleaning: gorilla/mux redirects (301) and runs no handler
		{"POST", "/v1.41//containers/create", "", nil, ""},
		{"POST", "//v1.41/containers/create", "", nil, ""},
		{"POST", "/v1.41/containers/./create", "", nil, ""},
		{"POST", "/v1.41/containers/x/../create", "", nil, ""},
		{"POST", "/v1.41/containers/x%2F..%2Fcreate", "", nil, ""},
		{"POST", "*", "", nil, ""},
		// trailing slash is kept by cleanPath and matches no POST route
		{"POST", "/v1.41/containers/create/", "", nil, ""},
		// methods are matched exactly
		{"post", "/v1.41/containers/create", "", nil, ""},
		// GET /containers/{name:.*}/json needs its /json suffix
		{"GET", "/v1.41/containers/create", "", nil, ""},
		// {name:.*} takes slashes; first registered route wins
		{"POST", "/v1.41/containers/web/exec", "container.exec.create", map[string]string{"name": "web"}, "1.41"},
		{"POST", "/v1.41/containers/a/b/exec", "container.exec.create", map[string]string{"name": "a/b"}, "1.41"},
		{"POST", "/v1.41/containers/a%2Fb/exec", "container.exec.create", map[string]string{"name": "a/b"}, "1.41"},
		{"POST", "/v1.41/plugins/vieux/sshfs:latest/enable", "plugin.enable", map[string]string{"name": "vieux/sshfs:latest"}, "1.41"},
		{"POST", "/plugins/x/enable/set", "plugin.set", map[string]string{"name": "x/enable"}, ""},
		{"POST", "/plugins/x/set/enable", "plugin.enable", map[string]string{"name": "x/set"}, ""},
		{"POST", "/plugins/x/disable/push", "plugin.push", map[string]string{"name": "x/disable"}, ""},
		{"DELETE", "/v1.41/plugins/dockplug-authz:latest", "plugin.remove", map[string]string{"name": "dockplug-authz:latest"}, "1.41"},
		// checkpoint routes come first and mask the container DELETE
		{"DELETE", "/v1.41/containers/x/checkpoints/y", "container.checkpoint.delete", map[string]string{"name": "x", "checkpoint": "y"}, "1.41"},
		{"DELETE", "/v1.41/containers/x/y", "container.delete", map[string]string{"name": "x/y"}, "1.41"},
		// '.' in Go regexps does not match a newline: 404
		{"POST", "/v1.41/containers/web%0A/exec", "", nil, ""},
		// no fragment handling in request targets
		{"POST", "/v1.41/containers/create#x", "", nil, ""},
		{"POST", "/v1.41/containers/web/exec#x", "", nil, ""},
		{"HEAD", "/_ping", "system.ping", nil, ""},
		{"OPTIONS", "/v1.41/containers/create", "system.options", map[string]string{"anyroute": "containers/create"}, "1.41"},
		{"GET", "/networks/", "network.list", nil, ""},
		{"GET", "/v1.41/exec/4b5a/json", "exec.inspect", map[string]string{"id": "4b5a"}, "1.41"},
		{"POST", "/v1.41/exec/4b5a/start", "exec.start", map[string]string{"name": "4b5a"}, "1.41"},
		{"POST", "/grpc", "grpc", nil, ""},
		{"POST", "/v1.41/nope", "", nil, ""},
		{"POST", "/containers/a%zz/exec", "", nil, ""},
		{"POST", "containers/create", "", nil, ""},
	} {
		r := Resolve(tc.method, tc.uri)
		if r.Action != tc.action {
			t.Errorf("%s %s: action %q (%s), want %q", tc.method, tc.uri, r.Action, r.Why, tc.action)
			continue
		}
		if r.Action == "" {
			if r.Why == "" {
				t.Errorf("%s %s: no route but no reason", tc.method, tc.uri)
			}
			continue
		}
		if r.Version != tc.version {
			t.Errorf("%s %s: version %q, want %q", tc.method, tc.uri, r.Version, tc.version)
		}
		for k, v := range tc.params {
			if r.Params[k] != v {
				t.Errorf("%s %s: param %s=%q, want %q", tc.method, tc.uri, k, r.Params[k], v)
			}
		}
	}
}

func TestResolveQueryAsTheDaemonReadsIt(t *testing.T) {
	r := Resolve("POST", "/v1.41/build?networkmode=default&networkmode=host&t=a;x=1")
	if got := r.Query.Get("networkmode"); got != "default" {
		t.Errorf("first value wins (r.Form.Get): got %q", got)
	}
	if _, ok := r.Query["t"]; ok {
		t.Errorf("a pair with ';' is skipped by url.ParseQuery: got %v", r.Query)
	}
	r = Resolve("POST", "/v1.41/build?network%6Dode=host")
	if got := r.Query.Get("networkmode"); got != "host" {
		t.Errorf("query keys are decoded: got %q", got)
	}
}

func TestEveryRouteResolvesToItself(t *testing.T) {
	for _, rt := range routes {
		p := rt.path
		for _, v := range []string{"{name:.*}", "{name}", "{id:.*}", "{id:.+}", "{id}", "{checkpoint}", "{anyroute:.*}"} {
			for i := 0; i < 3; i++ {
				p = replaceFirst(p, v, "x1")
			}
		}
		for _, prefix := range []string{"", "/v1.51"} {
			r := Resolve(rt.method, prefix+p)
			if r.Action != rt.action {
				t.Errorf("%s %s: got %q (%s), want %q", rt.method, prefix+p, r.Action, r.Why, rt.action)
			}
		}
	}
}

func replaceFirst(s, old, repl string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + repl + s[i+len(old):]
		}
	}
	return s
}
