package authz_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

// noExec denies docker exec and allows everything else.
type noExec struct{}

func (noExec) AuthZReq(_ context.Context, req *authz.Request) (*authz.Response, error) {
	if strings.Contains(req.RequestURI, "/exec") {
		return authz.Deny("exec is disabled on this host"), nil
	}
	return authz.Allow(), nil
}

func (noExec) AuthZRes(context.Context, *authz.Request) (*authz.Response, error) {
	return authz.Allow(), nil
}

func ExampleClient() {
	r := plugintest.Must(plugintest.Start("noexec", authz.NewHandler(noExec{})))
	defer os.RemoveAll(r.SocketDir)
	defer r.Stop()
	c := authz.NewClient(r.Client)
	ctx := context.Background()

	for _, uri := range []string{"/v1.47/containers/json", "/v1.47/containers/web/exec"} {
		res, err := c.AuthZReq(ctx, &authz.Request{RequestMethod: "POST", RequestURI: uri})
		// What dockerd makes of the answer.
		fmt.Println(uri, "->", authz.Verdict("noexec", res, err))
	}
	// Output:
	// /v1.47/containers/json -> <nil>
	// /v1.47/containers/web/exec -> authorization denied by plugin noexec: exec is disabled on this host
}
