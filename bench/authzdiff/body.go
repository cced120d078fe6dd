package authzdiff

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/runconfig"

	"github.com/dockplug/dockplug/authz"
	"github.com/dockplug/dockplug/authz/normalize"
)

// The body half of the differential test: container-create bodies whose
// dangerous fields are spelt in every way encoding/json accepts (any case,
// Unicode folding such as 'ſ' for 's' and the Kelvin sign for 'k'),
// repeated with other values (the last wins), mistyped, or followed by
// more content, are decoded by moby v28.5.2's own decoder
// (runconfig.ContainerDecoder, what postContainersCreate calls) and by the
// normaliser. Whenever the daemon accepts a body, the normaliser must accept
// it and see the same dangerous fields; when the daemon refuses it, the
// normaliser's view does not matter (the daemon does nothing).

// BodyResult counts one run.
type BodyResult struct {
	Tried, Accepted, Refused int
	// OverDenied: the daemon accepts, the normaliser refuses to judge
	// (denied: safe, but counted).
	OverDenied    int
	Disagreements []string
}

// hostFields are the HostConfig fields the baseline preset judges, with a
// generator of values for each (some of the wrong type).
var hostFields = map[string]func(r *rand.Rand) any{
	"Privileged": func(r *rand.Rand) any { return pick(r, true, false, true, "true", 1, nil) },
	"Binds": func(r *rand.Rand) any {
		return pickList(r, "/:/h", "/etc:/e:ro", "/var/run/docker.sock:/s", "vol:/d", "/srv/../etc:/x", "//root//:/r", "/tmp/:/t:rw,z")
	},
	"CapAdd": func(r *rand.Rand) any {
		return pickList(r, "SYS_ADMIN", "cap_sys_admin", "ALL", "net_raw", "CAP_NET_ADMIN", "sys_ptrace")
	},
	"CapDrop":      func(r *rand.Rand) any { return pickList(r, "ALL", "net_raw", "CAP_CHOWN") },
	"NetworkMode":  func(r *rand.Rand) any { return pick(r, "host", "bridge", "none", "default", "", "container:x", 7) },
	"PidMode":      func(r *rand.Rand) any { return pick(r, "host", "", "container:x") },
	"IpcMode":      func(r *rand.Rand) any { return pick(r, "host", "", "private", "shareable") },
	"UTSMode":      func(r *rand.Rand) any { return pick(r, "host", "") },
	"UsernsMode":   func(r *rand.Rand) any { return pick(r, "host", "") },
	"CgroupnsMode": func(r *rand.Rand) any { return pick(r, "host", "private", "") },
	"SecurityOpt": func(r *rand.Rand) any {
		return pickList(r, "seccomp=unconfined", "apparmor=unconfined", "label=disable", "no-new-privileges", "systempaths=unconfined")
	},
	"Devices": func(r *rand.Rand) any {
		return pick(r, []map[string]string{{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}}, []any{}, nil)
	},
	"Mounts": func(r *rand.Rand) any {
		return pick(r, []map[string]any{{"Type": "bind", "Source": "/etc", "Target": "/e"}},
			[]map[string]any{{"Type": "bind", "Source": "/srv//data/", "Target": "/d"}, {"Type": "volume", "Source": "v", "Target": "/v"}},
			[]any{}, nil)
	},
}

func pick(r *rand.Rand, vs ...any) any { return vs[r.IntN(len(vs))] }

func pickList(r *rand.Rand, vs ...string) any {
	if r.IntN(10) == 0 {
		return pick(r, nil, "notalist", 3)
	}
	n := r.IntN(3)
	out := make([]string, 0, n)
	for range n {
		out = append(out, vs[r.IntN(len(vs))])
	}
	return out
}

// spell writes name as encoding/json would still match it: each letter in
// either case, 's' sometimes as 'ſ' and 'k' as the Kelvin sign.
func spell(r *rand.Rand, name string) string {
	if r.IntN(3) == 0 {
		return name
	}
	var b strings.Builder
	for _, c := range name {
		switch lc := c | 0x20; {
		case lc == 's' && r.IntN(4) == 0:
			b.WriteRune('ſ')
		case lc == 'k' && r.IntN(3) == 0:
			b.WriteRune('\u212a')
		case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
			if r.IntN(2) == 0 {
				c ^= 0x20
			}
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// object writes the members in order; keys are written as given (raw
// JSON strings), so that duplicates and odd spellings reach the decoder.
func object(members [][2]string) string {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m[0])
		b.Write(k)
		b.WriteByte(':')
		b.WriteString(m[1])
	}
	b.WriteByte('}')
	return b.String()
}

func value(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// genBody makes one container-create body.
func genBody(r *rand.Rand) []byte {
	names := make([]string, 0, len(hostFields))
	for n := range hostFields {
		names = append(names, n)
	}
	slices.Sort(names)
	var host [][2]string
	for range 1 + r.IntN(5) {
		n := names[r.IntN(len(names))]
		host = append(host, [2]string{spell(r, n), value(hostFields[n](r))})
		if r.IntN(4) == 0 { // the same field again: the last one wins
			host = append(host, [2]string{spell(r, n), value(hostFields[n](r))})
		}
	}
	if r.IntN(5) == 0 {
		host = append(host, [2]string{"Unknown" + spell(r, "Field"), `{"x":1}`})
	}
	top := [][2]string{{spell(r, "Image"), value(pick(r, "busybox", "alpine:latest"))}}
	hc := object(host)
	top = append(top, [2]string{spell(r, "HostConfig"), hc})
	if r.IntN(6) == 0 { // a second HostConfig: the decoder keeps the last
		top = append(top, [2]string{spell(r, "HostConfig"), object(host[:r.IntN(len(host)+1)])})
	}
	if r.IntN(3) == 0 {
		r.Shuffle(len(top), func(i, j int) { top[i], top[j] = top[j], top[i] })
	}
	body := object(top)
	switch r.IntN(20) {
	case 0:
		body += " {}" // more content after the value: the daemon refuses
	case 1:
		body += "\n" // what the CLI's encoder writes
	}
	return []byte(body)
}

// daemonView is the dangerous part of what moby's decoder produced, in the
// normaliser's terms.
type daemonView struct {
	Image                                              string
	Privileged                                         bool
	NetworkMode, PidMode, IpcMode, UTSMode, UsernsMode string
	CgroupnsMode                                       string
	Binds, CapAdd, CapDrop, SecurityOpt, Devices       []string
}

func fromMoby(cfg *container.Config, hc *container.HostConfig) daemonView {
	var v daemonView
	if cfg != nil {
		v.Image = cfg.Image
	}
	if hc == nil {
		return v
	}
	v.Privileged = hc.Privileged
	v.NetworkMode = string(hc.NetworkMode)
	v.PidMode, v.IpcMode, v.UTSMode = string(hc.PidMode), string(hc.IpcMode), string(hc.UTSMode)
	v.UsernsMode, v.CgroupnsMode = string(hc.UsernsMode), string(hc.CgroupnsMode)
	for _, b := range hc.Binds {
		if src, _, _ := strings.Cut(b, ":"); strings.HasPrefix(src, "/") {
			v.Binds = append(v.Binds, filepath.Clean(src))
		}
	}
	for _, m := range hc.Mounts {
		if m.Type == "bind" {
			v.Binds = append(v.Binds, filepath.Clean(m.Source))
		}
	}
	v.CapAdd = normalize.NormalizeCaps(hc.CapAdd)
	v.CapDrop = normalize.NormalizeCaps(hc.CapDrop)
	v.SecurityOpt = hc.SecurityOpt
	for _, d := range hc.Devices {
		v.Devices = append(v.Devices, d.PathOnHost)
	}
	return v
}

func fromNormaliser(c normalize.Container) daemonView {
	return daemonView{
		Image: c.Image, Privileged: c.Privileged,
		NetworkMode: c.NetworkMode, PidMode: c.PidMode, IpcMode: c.IpcMode, UTSMode: c.UTSMode,
		UsernsMode: c.UsernsMode, CgroupnsMode: c.CgroupnsMode,
		Binds: c.Binds, CapAdd: c.CapAdd, CapDrop: c.CapDrop, SecurityOpt: c.SecurityOpt, Devices: c.Devices,
	}
}

// same compares two views; lists as sets, and the daemon's default network
// mode ("" becomes "default") on either side.
func same(a, b daemonView) bool {
	set := func(s []string) []string {
		s = slices.Clone(s)
		slices.Sort(s)
		return slices.Compact(s)
	}
	netMode := func(s string) string {
		if s == "" {
			return network.NetworkDefault
		}
		return s
	}
	return a.Image == b.Image && a.Privileged == b.Privileged &&
		netMode(a.NetworkMode) == netMode(b.NetworkMode) && a.PidMode == b.PidMode && a.IpcMode == b.IpcMode &&
		a.UTSMode == b.UTSMode && a.UsernsMode == b.UsernsMode && a.CgroupnsMode == b.CgroupnsMode &&
		slices.Equal(set(a.Binds), set(b.Binds)) && slices.Equal(set(a.CapAdd), set(b.CapAdd)) &&
		slices.Equal(set(a.CapDrop), set(b.CapDrop)) && slices.Equal(set(a.SecurityOpt), set(b.SecurityOpt)) &&
		slices.Equal(set(a.Devices), set(b.Devices))
}

// CheckBody runs one body through both decoders.
func CheckBody(res *BodyResult, body []byte) {
	res.Tried++
	// The decoder validates resources against this machine's sysinfo;
	// none of the generated fields is a resource, so that never decides.
	dec := runconfig.ContainerDecoder{}
	cfg, hc, _, derr := dec.DecodeConfig(bytes.NewReader(body))
	in := normalize.Normalize(&authz.Request{
		RequestMethod:  "POST",
		RequestURI:     "/v1.41/containers/create",
		RequestBody:    body,
		RequestHeaders: map[string]string{"Content-Type": "application/json"},
	})
	if derr != nil {
		res.Refused++
		return
	}
	res.Accepted++
	if in.Problem != "" {
		res.OverDenied++
		return
	}
	if d, n := fromMoby(cfg, hc), fromNormaliser(in.Container); !same(d, n) {
		res.Disagreements = append(res.Disagreements, fmt.Sprintf("body %s (base64 %s):\n  daemon     %+v\n  normaliser %+v",
			body, base64.StdEncoding.EncodeToString(body), d, n))
	}
}

// RunBodies checks n generated bodies.
func RunBodies(seed uint64, n int) BodyResult {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var res BodyResult
	for range n {
		CheckBody(&res, genBody(r))
	}
	return res
}
