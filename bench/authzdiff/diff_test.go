package authzdiff

import (
	"flag"
	"testing"
)

var (
	targets = flag.Int("targets", 20000, "fuzzed request targets per run")
	seed    = flag.Uint64("seed", 1, "generator seed")
)

// TestDifferential: whenever moby v28.5.2's router dispatches a target to
// route R, the normaliser resolves it to R (so to R's action, never to
// "no route"), with the same path variables and version.
func TestDifferential(t *testing.T) {
	res := Run(*seed, *targets)
	t.Logf("targets tried: %d; served by the daemon's router: %d; not served: %d (of which the normaliser names a route: %d, %d without a space); disagreements: %d",
		res.Tried, res.Served, res.NotServed, res.OverApprox, res.OverApproxNoSpace, len(res.Disagreements))
	for i, d := range res.Disagreements {
		if i == 30 {
			t.Errorf("... and %d more", len(res.Disagreements)-30)
			break
		}
		t.Error(d)
	}
	if res.Served < res.Tried/10 {
		t.Errorf("only %d of %d targets were served: the generator is not exercising the routes", res.Served, res.Tried)
	}
}

// FuzzRouter: go test -fuzz FuzzRouter ./authzdiff
func FuzzRouter(f *testing.F) {
	for _, s := range []string{"/v1.41/containers/create", "/containers/a%2Fb/json", "http://x/v1/plugins/p/disable", "//info"} {
		f.Add("POST", s)
		f.Add("GET", s)
	}
	rt := NewRouter(Routers())
	f.Fuzz(func(t *testing.T, method, target string) {
		var res Result
		rt.Check(&res, method, target)
		for _, d := range res.Disagreements {
			t.Error(d)
		}
	})
}

var bodies = flag.Int("bodies", 3000, "fuzzed container-create bodies per run")

// TestBodyDifferential: whenever moby v28.5.2's container decoder accepts a
// create body, the normaliser accepts it too and sees the same dangerous
// fields (see body.go).
func TestBodyDifferential(t *testing.T) {
	res := RunBodies(*seed, *bodies)
	t.Logf("bodies tried: %d; accepted by the daemon's decoder: %d; refused: %d; accepted but not judged by the normaliser (denied): %d; disagreements: %d",
		res.Tried, res.Accepted, res.Refused, res.OverDenied, len(res.Disagreements))
	for i, d := range res.Disagreements {
		if i == 20 {
			t.Errorf("... and %d more", len(res.Disagreements)-20)
			break
		}
		t.Error(d)
	}
	if res.OverDenied > 0 {
		t.Errorf("%d bodies the daemon runs were refused by the normaliser (denied: safe, but not what the daemon does)", res.OverDenied)
	}
	if res.Accepted < res.Tried/4 || res.Refused == 0 {
		t.Errorf("accepted %d, refused %d of %d: the generator is not exercising both paths", res.Accepted, res.Refused, res.Tried)
	}
}

// FuzzBody: go test -fuzz FuzzBody ./authzdiff
func FuzzBody(f *testing.F) {
	f.Add([]byte(`{"Image":"x","HostConfig":{"Privileged":true}}`))
	f.Add([]byte(`{"HostConfig":{"pſivileged":false,"PRIVILEGED":true}}`))
	f.Add([]byte(`{"HostConfig":{"Binds":["/:/h"]}} {}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var res BodyResult
		CheckBody(&res, body)
		for _, d := range res.Disagreements {
			t.Error(d)
		}
	})
}
