package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/authz/normalize/moby"
)

// Normalize turns an AuthZReq into what the daemon will do with it. It
// never fails: a request it cannot judge carries a Problem.
func Normalize(req *authz.Request) *Input {
	in := &Input{}
	in.User = User{Name: req.User, AuthMethod: req.UserAuthNMethod, UID: -1, GID: -1}
	in.Request.Method = req.RequestMethod
	in.Request.HasBody = len(req.RequestBody) > 0
	in.Request.ContentType = mediaType(header(req.RequestHeaders, "Content-Type"))
	switch req.RequestMethod {
	case "POST", "PUT", "PATCH": // the methods http.Request.ParseForm reads a body for
		in.Request.HiddenForm = in.Request.ContentType == "application/x-www-form-urlencoded" ||
			in.Request.ContentType == "multipart/form-data"
	}

	res := Resolve(req.RequestMethod, req.RequestURI)
	in.Request.Path, in.Request.Version = res.Path, res.Version
	in.Request.Route, in.Request.Action, in.Request.Params = res.Route, res.Action, res.Params
	in.Request.Query = map[string]string{}
	in.Request.QueryAll = map[string][]string(res.Query)
	if in.Request.QueryAll == nil {
		in.Request.QueryAll = map[string][]string{}
	}
	for k, v := range res.Query {
		if len(v) > 0 {
			in.Request.Query[k] = v[0]
		}
	}
	if in.Request.Params == nil {
		in.Request.Params = map[string]string{}
	}
	if res.Action == "" {
		in.Problem, in.ProblemKind = res.Why, "route"
		return in
	}
	if res.Body != BodyNone {
		if err := decodeBody(in, res.Body, req.RequestBody); err != nil {
			in.Problem = fmt.Sprintf("%s: %v", res.Action, err)
			if len(req.RequestBody) == 0 {
				in.ProblemKind = "missing-body"
			} else {
				in.ProblemKind = "bad-body"
			}
			return in
		}
	}
	switch res.Action {
	case "build":
		q := in.Request.Query
		in.Build = Build{NetworkMode: q["networkmode"], Remote: q["remote"], Dockerfile: q["dockerfile"],
			Tags: res.Query["t"], BuildKit: q["version"] == "2"}
	case "exec.start", "exec.inspect", "exec.resize":
	case "container.exec.create":
		in.Exec.Container = res.Params["name"]
	}
	if strings.HasPrefix(res.Action, "plugin.") {
		in.Plugin.Name = res.Params["name"]
		if in.Plugin.Name == "" {
			in.Plugin.Name = in.Request.Query["name"] // create
		}
		in.Plugin.Remote = in.Request.Query["remote"]
	}
	return in
}

// errNoBody is the reason for a guarded endpoint without RequestBody.
var errNoBody = errors.New("no request body was forwarded (chunked, oversized, empty or not application/json), but the daemon may read one")

func decodeBody(in *Input, kind Body, body []byte) error {
	if kind == BodyPluginCreate {
		return errors.New("the body is a tar stream the daemon never forwards")
	}
	if len(body) == 0 {
		return errNoBody
	}
	switch kind {
	case BodyContainerCreate:
		var w moby.CreateRequest
		if err := decodeJSON(body, &w); err != nil {
			return err
		}
		if w.Config == nil {
			return errors.New("config cannot be empty in order to create a container")
		}
		in.Container = containerView(&w, in.Request)
	case BodyContainerUpdate:
		var u moby.UpdateConfig
		if err := decodeJSON(body, &u); err != nil {
			return err
		}
		in.Container = resourcesView(&u.Resources)
	case BodyExecCreate:
		var e moby.ExecOptions
		if err := decodeJSON(body, &e); err != nil {
			return err
		}
		in.Exec = Exec{Privileged: e.Privileged, User: e.User, Cmd: nonNil(e.Cmd),
			EnvNames: envNames(e.Env), WorkingDir: e.WorkingDir}
	case BodyVolumeCreate:
		var v moby.VolumeCreateOptions
		if err := decodeJSON(body, &v); err != nil {
			return err
		}
		in.Volume = volumeView(&v)
	case BodyService:
		var s moby.ServiceSpec
		if err := decodeJSON(body, &s); err != nil {
			return err
		}
		in.Service = serviceView(&s)
	case BodyPluginPrivileges:
		var ps []moby.PluginPrivilege
		if err := decodeJSON(body, &ps); err != nil {
			return err
		}
		for _, p := range ps {
			in.Plugin.Privileges = append(in.Plugin.Privileges, Privilege{Name: p.Name, Value: nonNil(p.Value)})
		}
	case BodyPluginSet:
		var args []string
		if err := decodeJSON(body, &args); err != nil {
			return err
		}
		for _, a := range args {
			k, _, _ := strings.Cut(a, "=")
			in.Plugin.Settings = append(in.Plugin.Settings, k)
		}
	}
	return nil
}

// decodeJSON decodes as the daemon's httputils.ReadJSON and runconfig's
// loadJSON do: one json.Decoder value (so trailing "}" or "]" passes, as
// dec.More reports false there), anything else after it refused.
func decodeJSON(body []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return errors.New("unexpected content after JSON")
	}
	return nil
}

// header finds a header by its canonical key; the daemon sends canonical
// keys, but a hand-written request may not.
func header(h map[string]string, key string) string {
	if v, ok := h[key]; ok {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

func mediaType(ct string) string {
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return "invalid"
	}
	return mt
}

func envNames(env []string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		out = append(out, k)
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
