package policy

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/authz/identity"
)

func TestIdentityHeader(t *testing.T) {
	f, err := ParseFile([]byte(`default: deny
rules:
  - name: root-may
    allow: 'user.uid == 0 && user.name == "root" && "root" in user.groups && user.authMethod == "peercred"'
  - name: anonymous-reads
    allow: 'user.uid == -1 && user.gid == -1 && request.method == "GET"'
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(f, "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	key, err := identity.ReadOrCreateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	id := &Identity{Verifier: identity.NewVerifier(keyFile), Accounts: identity.NewAccounts()}
	signed := func(uid uint32, method, uri string) *authz.Request {
		c, err := identity.NewClaims(uid, uid, 1)
		if err != nil {
			t.Fatal(err)
		}
		return &authz.Request{RequestMethod: method, RequestURI: uri,
			RequestHeaders: map[string]string{identity.Header: identity.Sign(key, c, method, uri)}}
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		req   *authz.Request
		id    *Identity
		allow bool
		rule  string
		msg   string
	}{
		{"root through the proxy", signed(0, "DELETE", "/v1.47/containers/x"), id, true, "root-may", ""},
		{"another uid", signed(4242, "DELETE", "/v1.47/containers/x"), id, false, "default", ""},
		{"anonymous", &authz.Request{RequestMethod: "GET", RequestURI: "/info"}, id, true, "anonymous-reads", ""},
		{"header moved to another request", func() *authz.Request {
			r := signed(0, "GET", "/info")
			r.RequestURI = "/v1.47/containers/x"
			r.RequestMethod = "DELETE"
			return r
		}(), id, false, "identity", "bad signature"},
		{"forged", &authz.Request{RequestMethod: "GET", RequestURI: "/info",
			RequestHeaders: map[string]string{identity.Header: "v1;uid=0;gid=0;pid=1;t=1;n=0;mac=AAAA"}}, id, false, "identity", "bad signature"},
		{"header without a key", signed(0, "GET", "/info"), nil, false, "identity", "no identity key"},
	} {
		d := p.DecideAs(ctx, tc.req, false, tc.id)
		if d.Allow != tc.allow || d.Rule != tc.rule || !strings.Contains(d.Message, tc.msg) {
			t.Errorf("%s: %+v, want allow=%v rule=%s message~%q", tc.name, d, tc.allow, tc.rule, tc.msg)
		}
	}
	// AuthZRes of a proxied request: same header, judged again (no replay).
	r := signed(0, "GET", "/info")
	if d := p.DecideAs(ctx, r, false, id); !d.Allow || d.UID != 0 {
		t.Errorf("request: %+v", d)
	}
	if d := p.DecideAs(ctx, r, true, id); !d.Allow {
		t.Errorf("response of the same request: %+v", d)
	}
	if d := p.DecideAs(ctx, r, false, id); d.Allow || !strings.Contains(d.Message, "replayed") {
		t.Errorf("replayed request: %+v", d)
	}
}
