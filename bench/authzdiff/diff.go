package authzdiff

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"strings"

	"github.com/docker/docker/api/server/router"

	"github.com/dockplug/dockplug/authz/normalize"
)

// Result counts one run.
type Result struct {
	Tried      int
	Served     int // the daemon's router dispatched to a route
	NotServed  int // 404, method mismatch, clean-path redirect, 400
	OverApprox int // not served, yet the normaliser names a route (harmless: the plugin is never asked)
	// OverApproxNoSpace: of those, the targets without a space or tab
	// (which cannot be on a request line at all).
	OverApproxNoSpace int
	Disagreements     []string
}

// Check compares one target: when the router serves it, the normaliser
// must resolve it to the same route (method and template), with the same
// path variables and version.
func (rt *Router) Check(res *Result, method, target string) {
	res.Tried++
	d, req := rt.Route(method, target)
	var got normalize.Resolution
	if req != nil {
		// The authorization middleware sends r.RequestURI.
		got = normalize.Resolve(method, req.RequestURI)
	} else {
		got = normalize.Resolve(method, target)
	}
	if !d.Served {
		res.NotServed++
		if got.Action != "" {
			res.OverApprox++
			if !strings.ContainsAny(target, " \t") {
				res.OverApproxNoSpace++
			}
		}
		return
	}
	res.Served++
	vars := maps.Clone(d.Vars)
	version := vars["version"]
	delete(vars, "version")
	params := got.Params
	if params == nil {
		params = map[string]string{}
	}
	if got.Action == "" || got.Route != d.Path || got.Version != version || !maps.Equal(vars, params) {
		res.Disagreements = append(res.Disagreements, fmt.Sprintf("%s %q: daemon routes to %s %s vars=%v version=%q; normaliser: action=%q route=%q params=%v version=%q (%s)",
			method, target, d.Method, d.Path, vars, version, got.Action, got.Route, params, got.Version, got.Why))
	}
}

var varRE = regexp.MustCompile(`\{([^}:]+)(:[^}]*)?\}`)

// values path variables take in generated targets.
var values = []string{"abc", "c0ffee", "a/b", "x/json", "..", ".", "", "a%2Fb", "%2e%2e", "n%41me", "Ω", "a b", "a%20b",
	"create", "json", "a;b", "a?b", "a#b", "%", "%zz", "plugin:latest", "docker.io/library/busybox:1"}

// versions are /v{version} prefixes, valid and not.
var versions = []string{"", "", "/v1.41", "/v1.51", "/v1", "/v", "/v.", "/v...", "/v0001.041", "/V1.41", "/v1.41a", "/v-1", "/v1,41", "/v%31.41", "/v1.41/", "//v1.41"}

var methods = []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "get", "Post", "CONNECT", "TRACE"}

// Gen generates request targets from the route list, deterministically
// from seed.
type Gen struct {
	r      *rand.Rand
	routes []router.Route
}

// NewGen returns a generator over routers' routes.
func NewGen(seed uint64, routers []router.Router) *Gen {
	g := &Gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for _, rr := range routers {
		g.routes = append(g.routes, rr.Routes()...)
	}
	return g
}

func (g *Gen) pick(s []string) string { return s[g.r.IntN(len(s))] }

// Next returns a method and a target: a route's path with its variables
// filled in, under a version prefix, then mutated a few times.
func (g *Gen) Next() (string, string) {
	rt := g.routes[g.r.IntN(len(g.routes))]
	method := rt.Method()
	if g.r.IntN(5) == 0 {
		method = g.pick(methods)
	}
	path := varRE.ReplaceAllStringFunc(rt.Path(), func(string) string { return g.pick(values) })
	p := g.pick(versions) + path
	for n := g.r.IntN(4); n > 0; n-- {
		p = g.mutate(p)
	}
	return method, p
}

func (g *Gen) mutate(p string) string {
	segs := strings.Split(p, "/")
	i := g.r.IntN(len(segs))
	switch g.r.IntN(14) {
	case 0: // percent-encode one byte
		if len(p) > 1 {
			j := 1 + g.r.IntN(len(p)-1)
			return p[:j] + fmt.Sprintf("%%%02X", p[j]) + p[j+1:]
		}
	case 1: // lowercase-encode one byte
		if len(p) > 1 {
			j := 1 + g.r.IntN(len(p)-1)
			return p[:j] + fmt.Sprintf("%%%02x", p[j]) + p[j+1:]
		}
	case 2: // dot segment
		segs = append(segs[:i], append([]string{g.pick([]string{".", "..", "%2e", "%2E%2E", ".%2e"})}, segs[i:]...)...)
		return strings.Join(segs, "/")
	case 3: // double slash
		segs = append(segs[:i], append([]string{""}, segs[i:]...)...)
		return strings.Join(segs, "/")
	case 4: // case
		segs[i] = strings.ToUpper(segs[i])
		return strings.Join(segs, "/")
	case 5:
		return p + "/"
	case 6: // absolute form
		return g.pick([]string{"http://docker", "http://evil.example:80", "HTTP://docker", "https://a@b", "unix://x", "http://[::1]"}) + p
	case 7: // query tricks
		return p + g.pick([]string{"?", "??", "?a=1", "?a=1#frag", "#frag", "?;x=1", "?name=x&name=y", "?%zz", "%3Fa=1", "?fromImage=a&fromSrc=-"})
	case 8: // encoded slash
		return strings.Replace(p, "/", "%2F", 1+g.r.IntN(2))
	case 9: // double-encoding
		return strings.Replace(p, "%", "%25", 1)
	case 10: // trailing junk
		return p + g.pick([]string{"%00", "%0a", " ", "\t", ";", ";a=b", "%20"})
	case 11: // drop the leading slash
		return strings.TrimPrefix(p, "/")
	case 12: // swap a segment for another route's
		other := g.routes[g.r.IntN(len(g.routes))].Path()
		os := strings.Split(other, "/")
		segs[i] = varRE.ReplaceAllString(os[g.r.IntN(len(os))], "x")
		return strings.Join(segs, "/")
	case 13: // unicode
		return p + g.pick([]string{"ſ", "K", "é", "%C5%BF", "%E2%80%8B"})
	}
	return p
}

// Run generates n targets from seed and checks them, plus every route's
// plain forms (with and without a version prefix).
func Run(seed uint64, n int) Result {
	routers := Routers()
	rt := NewRouter(routers)
	var res Result
	for _, rr := range routers {
		for _, r := range rr.Routes() {
			p := varRE.ReplaceAllString(r.Path(), "abc")
			for _, v := range []string{"", "/v1.41", "/v1", "/v0001.041", "/v..."} {
				rt.Check(&res, r.Method(), v+p)
				rt.Check(&res, r.Method(), "http://docker"+v+p+"?x=1")
			}
		}
	}
	g := NewGen(seed, routers)
	for range n {
		m, t := g.Next()
		rt.Check(&res, m, t)
	}
	return res
}
