package policy

import (
	"context"
	"testing"

	"github.com/dockplug/dockplug/authz"
)

// FuzzDecide: the baseline policy never panics and always decides, and a
// deny always carries a message for the user.
func FuzzDecide(f *testing.F) {
	f.Add("POST", "/v1.41/containers/create", []byte(`{"Image":"a","HostConfig":{"CapAdd":["ALL"],"Mounts":[{"Type":"volume","VolumeOptions":{"DriverConfig":{"Options":{"o":"bind","device":"x"}}}}]}}`), false)
	f.Add("POST", "/services/create", []byte(`{"TaskTemplate":{"Networks":[{"Target":"host"}]}}`), false)
	f.Add("GET", "/v1.41/containers/json", []byte(nil), true)
	p, err := Compile(&File{Presets: []string{"baseline"}, Default: "allow"}, "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, uri string, body []byte, response bool) {
		d := p.Decide(context.Background(), &authz.Request{RequestMethod: method, RequestURI: uri,
			RequestHeaders: map[string]string{"Content-Type": "application/json"}, RequestBody: body}, response)
		if d.Rule == "" {
			t.Fatalf("no rule named for %s %q", method, uri)
		}
		if !d.Allow && d.Message == "" {
			t.Fatalf("deny without message for %s %q (%s)", method, uri, d.Rule)
		}
		if d.Rule == "panic" {
			t.Fatalf("panic: %s", d.Message)
		}
	})
}
