package normalize

import (
	"fmt"
	"net/url"
	"path"
)

// Resolution is where the daemon's router dispatches a request.
type Resolution struct {
	// Path is the decoded path the router matched (URL.Path).
	Path string
	// Version is the /v{version} prefix's value; "" without one.
	Version string
	// Route is the matched route's template (without the version prefix).
	Route string
	// Action is our name for the route ("container.create"); "" when the
	// daemon would not dispatch the request to any handler.
	Action string
	// Params holds the route's path variables (name, id, ...), decoded.
	Params map[string]string
	// Query is the parsed query string; pairs url.ParseQuery skips (bad
	// escapes, semicolons) are skipped here too, as the daemon's
	// r.Form/FormValue skip them.
	Query url.Values
	// Body is the route's guarded body kind.
	Body Body
	// Why explains an empty Action.
	Why string
}

// Resolve finds the route the daemon would run for method and the raw
// request target uri (AuthZReq's RequestUri, which is r.RequestURI).
//
// It follows what happens to the request in the daemon: net/http parses
// the target with url.ParseRequestURI (origin form or absolute form, no
// fragment handling) and fails the request if that fails; gorilla/mux
// (cleaning on, encoded-path matching off) answers a 301 redirect without
// running any handler when path.Clean changes the decoded path (dot
// segments, double slashes), and otherwise dispatches to the first route
// whose method matches exactly and whose regexp matches the decoded path.
func Resolve(method, uri string) Resolution {
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return Resolution{Why: fmt.Sprintf("request target does not parse (the daemon answers 400): %v", err)}
	}
	res := Resolution{Path: u.Path}
	res.Query, _ = url.ParseQuery(u.RawQuery)
	if c := cleanPath(u.Path); c != u.Path {
		return fail(res, fmt.Sprintf("the daemon's router redirects %q to %q and runs no handler", u.Path, c))
	}
	for i := range table {
		c := &table[i]
		// A route of another method is passed over whether its path
		// matches or not (gorilla notes a method mismatch and tries the
		// next route), so its regexp need not run. The catch-alls
		// (action "") match any method.
		if c.action != "" && c.method != method {
			continue
		}
		m := c.re.FindStringSubmatch(u.Path)
		if m == nil {
			continue
		}
		if c.action == "" {
			return fail(res, "no such route: the daemon answers 404")
		}
		res.Action, res.Route, res.Body = c.action, c.path, c.body
		res.Params = make(map[string]string, len(c.names))
		for j, n := range c.names {
			if n == "version" {
				res.Version = m[j+1]
				continue
			}
			res.Params[n] = m[j+1]
		}
		return res
	}
	return fail(res, "no such route: the daemon answers 404")
}

func fail(r Resolution, why string) Resolution {
	r.Why = why
	return r
}

// cleanPath is gorilla/mux's cleanPath (borrowed from net/http).
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}
