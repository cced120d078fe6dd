package normalize

import (
	"testing"

	"github.com/dockplug/dockplug/authz"
)

// FuzzNormalize: never panics, and every request either resolves to a
// known action or carries the reason it cannot be judged.
func FuzzNormalize(f *testing.F) {
	f.Add("POST", "/v1.41/containers/create", "application/json", []byte(`{"Image":"a","HostConfig":{"Privileged":true}}`))
	f.Add("POST", "/v1.41/containers/web/exec", "application/json", []byte(`{"Privileged":true,"Cmd":["sh"]}`))
	f.Add("POST", "/services/create", "application/json", []byte(`{"TaskTemplate":{"ContainerSpec":{"Mounts":[{"Type":"bind","Source":"/"}]}}}`))
	f.Add("POST", "/v1.41/volumes/create", "application/json", []byte(`{"DriverOpts":{"o":"bind","device":"/"}}`))
	f.Add("POST", "/plugins/pull?remote=x", "application/json", []byte(`[{"Name":"network","Value":["host"]}]`))
	f.Add("GET", "http://h/v1.41/containers/a%2Fb/json?x=1;y", "", []byte(nil))
	f.Fuzz(func(t *testing.T, method, uri, ct string, body []byte) {
		in := Normalize(&authz.Request{RequestMethod: method, RequestURI: uri,
			RequestHeaders: map[string]string{"Content-Type": ct}, RequestBody: body})
		if in.Request.Action == "" && in.Problem == "" {
			t.Fatalf("%s %q: no action and no problem", method, uri)
		}
		if in.Problem != "" && in.ProblemKind == "" {
			t.Fatalf("%s %q: problem without kind", method, uri)
		}
	})
}
