package authz

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/dockplug/dockplug/plugin"
)

var requestSeeds = []string{
	``,
	`{}`,
	`null`,
	`{"RequestMethod":"GET","RequestUri":"/_ping"}`,
	`{"User":"alice","UserAuthNMethod":"TLS","RequestMethod":"POST","RequestUri":"/v1.47/containers/create",` +
		`"RequestBody":"eyJJbWFnZSI6ImJ1c3lib3gifQ==","RequestHeaders":{"Content-Type":"application/json"}}` + "\n",
	`{"RequestMethod":"GET","RequestUri":"/info","ResponseStatusCode":200,"ResponseBody":"e30=","ResponseHeaders":{"Server":"Docker"}}`,
	`{"RequestMethod":"GET","RequestUri":"/x","RequestPeerCertificates":["bm90IHBlbQ==",null]}`,
	`{"RequestMethod":"GET","RequestUri":"/x","RequestPeerCertificates":["LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkFBQUEKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="]}`,
	`{"RequestMethod":"GET","RequestUri":"/x","RequestBody":"!!"}`,
	`{"RequestMethod":`,
}

// Server side: fuzzed bodies through the Handler's methods. The plugin
// always allows, so any error must be a clear 400 *plugin.Error, and what
// reaches the plugin has the fields the daemon always sets.
func fuzzHandler(f *testing.F, method string) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	withCert, err := json.Marshal(fullRequest(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(withCert)
	p := &fakePlugin{resp: Allow()}
	fn := NewHandler(p).Methods()[method]
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := fn(context.Background(), body)
		if err != nil {
			var pe *plugin.Error
			if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || pe.Msg == "" {
				t.Fatalf("body %q: error %v (%T) is not a 400 *plugin.Error", body, err, err)
			}
			return
		}
		if r, ok := resp.(*Response); !ok || !r.Allow {
			t.Fatalf("body %q: answer %#v", body, resp)
		}
		req := p.lastReq()
		if req.RequestMethod == "" || req.RequestURI == "" {
			t.Fatalf("body %q: incomplete request reached the plugin: %+v", body, req)
		}
		for _, c := range req.RequestPeerCertificates {
			if c.Certificate == nil {
				t.Fatalf("body %q: nil certificate reached the plugin", body)
			}
		}
		// What reached the plugin encodes again (certificates included).
		if _, err := json.Marshal(req); err != nil {
			t.Fatalf("body %q: decoded request does not encode: %v", body, err)
		}
	})
}

func FuzzAuthZReqRequest(f *testing.F) { fuzzHandler(f, MethodAuthZReq) }

func FuzzAuthZResRequest(f *testing.F) { fuzzHandler(f, MethodAuthZRes) }

// Client side: fuzzed 200 bodies through the Client's decoder. No panic;
// an accepted body is a decision whatever its Err.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{``, `{}`, `null`, `{"Allow":true}`, `{"Allow":false,"Msg":"no"}`,
		`{"Allow":true,"Err":"ignored"}`, `{"allow":"yes"}`, `{"Allow":true} trailing`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := decodeResponse(MethodAuthZReq, body)
		if err != nil {
			return
		}
		v := Verdict("p", res, nil)
		if (v == nil) != res.Allow {
			t.Fatalf("body %q: Verdict %v for %+v", body, v, res)
		}
	})
}
