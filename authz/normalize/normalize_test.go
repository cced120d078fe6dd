package normalize

import (
	"slices"
	"testing"

	"github.com/dockplug/dockplug/authz"
)

func create(body string) *Input {
	return Normalize(&authz.Request{RequestMethod: "POST", RequestURI: "/v1.41/containers/create",
		RequestHeaders: map[string]string{"Content-Type": "application/json"}, RequestBody: []byte(body)})
}

// The daemon decodes with encoding/json: keys case-insensitive with
// Unicode folding, last duplicate wins, unknown fields ignored, and
// dec.More() lets a trailing '}' or ']' pass.
func TestBodyDecodedAsTheDaemonDoes(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		priv       bool
		binds      []string
		problem    string
	}{
		{"exact", `{"Image":"a","HostConfig":{"Privileged":true}}`, true, nil, ""},
		{"lowercase", `{"image":"a","hostconfig":{"privileged":true}}`, true, nil, ""},
		{"mixed", `{"IMAGE":"a","hOsTcOnFiG":{"PRIVILEGED":true}}`, true, nil, ""},
		{"last duplicate wins", `{"Image":"a","HostConfig":{"Privileged":false,"privileged":true}}`, true, nil, ""},
		{"last duplicate wins off", `{"Image":"a","HostConfig":{"Privileged":true,"Privileged":false}}`, false, nil, ""},
		{"unicode long s folds to s", `{"Image":"a","HostConfig":{"Bindſ":["/:/h"]}}`, false, []string{"/"}, ""},
		{"trailing brace passes", `{"Image":"a","HostConfig":{"Privileged":true}}}`, true, nil, ""},
		{"trailing bracket passes", `{"Image":"a","HostConfig":{"Privileged":true}}]`, true, nil, ""},
		{"second value refused", `{"Image":"a"}{"HostConfig":{"Privileged":true}}`, false, nil, "bad-body"},
		{"truncated", `{"Image":"a","HostConfig":{"Privileged":tr`, false, nil, "bad-body"},
		{"wrong type", `{"Image":"a","HostConfig":{"Privileged":"true"}}`, false, nil, "bad-body"},
		{"no config", `{"HostConfig":{"Privileged":true}}`, false, nil, "bad-body"},
		{"null", `null`, false, nil, "bad-body"},
		{"empty", ``, false, nil, "missing-body"},
		{"unknown fields ignored", `{"Image":"a","Bogus":{"x":1},"HostConfig":{"Privileged":true,"Nope":[]}}`, true, nil, ""},
		{"clean binds", `{"Image":"a","HostConfig":{"Binds":["/srv/../etc//:/x:ro","/var/run/docker.sock:/s","data:/d"]}}`, false, []string{"/etc", "/var/run/docker.sock"}, ""},
	} {
		in := create(tc.body)
		if in.ProblemKind != tc.problem {
			t.Errorf("%s: problem %q (%s), want %q", tc.name, in.ProblemKind, in.Problem, tc.problem)
			continue
		}
		if tc.problem != "" {
			continue
		}
		if in.Container.Privileged != tc.priv {
			t.Errorf("%s: privileged %v, want %v", tc.name, in.Container.Privileged, tc.priv)
		}
		if tc.binds != nil && !slices.Equal(in.Container.Binds, tc.binds) {
			t.Errorf("%s: binds %q, want %q", tc.name, in.Container.Binds, tc.binds)
		}
	}
}

func TestCapsNormalisedAsTheDaemonDoes(t *testing.T) {
	for _, tc := range []struct {
		add, drop []string
		added     []string
	}{
		{[]string{"sys_admin"}, nil, []string{"CAP_SYS_ADMIN"}},
		{[]string{"Cap_Sys_Admin"}, nil, []string{"CAP_SYS_ADMIN"}},
		{[]string{"ſys_admin"}, nil, []string{"CAP_SYS_ADMIN"}}, // strings.ToUpper maps U+017F to S
		{[]string{"CHOWN", "cap_kill"}, nil, nil},
		{[]string{"all"}, []string{"sys_admin"}, without(AddedCaps(AllCaps), "CAP_SYS_ADMIN")},
		{[]string{"NET_ADMIN"}, []string{"ALL"}, []string{"CAP_NET_ADMIN"}},
		{[]string{"CHOWN"}, []string{"ALL"}, nil},
		{nil, []string{"ALL"}, nil},
	} {
		got := AddedCaps(EffectiveCaps(tc.add, tc.drop, false))
		if !slices.Equal(got, tc.added) && !(len(got) == 0 && len(tc.added) == 0) {
			t.Errorf("add %q drop %q: added %q, want %q", tc.add, tc.drop, got, tc.added)
		}
	}
	if got := AddedCaps(EffectiveCaps(nil, nil, true)); len(got) != len(AllCaps)-len(DefaultCaps) {
		t.Errorf("privileged: added %d caps, want %d", len(got), len(AllCaps)-len(DefaultCaps))
	}
}

func without(s []string, v string) []string {
	return slices.DeleteFunc(slices.Clone(s), func(x string) bool { return x == v })
}

func TestEffectiveMounts(t *testing.T) {
	in := create(`{"Image":"a","HostConfig":{"Mounts":[
		{"Type":"bind","Source":"/etc/","Target":"/e"},
		{"Type":"volume","Source":"v1","Target":"/v","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"none","o":"rbind,ro","device":"/root//.ssh/"}}}},
		{"Type":"volume","Source":"v2","Target":"/w","VolumeOptions":{"DriverConfig":{"Options":{"type":"ext4","device":"/dev/sda1"}}}},
		{"Type":"volume","Source":"v3","Target":"/n","VolumeOptions":{"DriverConfig":{"Options":{"type":"nfs","o":"addr=10.0.0.1","device":":/export"}}}},
		{"Type":"volume","Source":"v4","Target":"/o","VolumeOptions":{"DriverConfig":{"Name":"other","Options":{"o":"bind","device":"/"}}}}
	]}}`)
	if in.Problem != "" {
		t.Fatal(in.Problem)
	}
	c := in.Container
	if !slices.Equal(c.Binds, []string{"/etc", "/root/.ssh"}) {
		t.Errorf("binds %q", c.Binds)
	}
	if !slices.Equal(c.HostMounts, []string{"ext4:/dev/sda1"}) {
		t.Errorf("host mounts %q", c.HostMounts)
	}
	v := Normalize(&authz.Request{RequestMethod: "POST", RequestURI: "/volumes/create",
		RequestBody: []byte(`{"Name":"x","DriverOpts":{"type":"none","o":"bind","device":"/var/lib/../.."}}`)})
	if !slices.Equal(v.Volume.HostPaths, []string{"/"}) || v.Volume.Driver != "local" {
		t.Errorf("volume %+v", v.Volume)
	}
}

func TestSecurityOptions(t *testing.T) {
	for opt, want := range map[string]string{
		"seccomp=unconfined":                         "seccomp",
		"seccomp:unconfined":                         "seccomp", // legacy ':' separator
		`seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`: "seccomp-custom",
		"apparmor=unconfined":                        "apparmor",
		"apparmor:unconfined":                        "apparmor",
		"label=disable":                              "label",
		"label:disable":                              "label",
		"disable":                                    "label",
		"label=type:spc_t":                           "label",
		"systempaths=unconfined":                     "systempaths",
		"writable-cgroups":                           "writable-cgroups",
		"writable-cgroups=true":                      "writable-cgroups",
		"no-new-privileges":                          "",
		"apparmor=docker-default":                    "",
		"label=level:s0:c100,c200":                   "",
	} {
		got := securityUnconfined([]string{opt})
		if (want == "" && len(got) != 0) || (want != "" && !slices.Equal(got, []string{want})) {
			t.Errorf("%q: %q, want %q", opt, got, want)
		}
	}
	// U+212A (Kelvin sign) folds to k: "Mas\u212aedPaths" is MaskedPaths.
	in := create("{\"Image\":\"a\",\"HostConfig\":{\"Mas\u212aedPaths\":[],\"ReadonlyPaths\":null}}")
	if !slices.Equal(in.Container.Unconfined, []string{"masked-paths"}) {
		t.Errorf("explicit empty MaskedPaths: %q", in.Container.Unconfined)
	}
}

func TestHostNamespaces(t *testing.T) {
	in := create(`{"Image":"a","HostConfig":{"NetworkMode":"host","PidMode":"host","IpcMode":"host","UTSMode":"host","UsernsMode":"host","CgroupnsMode":"host"}}`)
	if want := []string{"network", "pid", "ipc", "uts", "userns", "cgroupns"}; !slices.Equal(in.Container.HostNamespaces, want) {
		t.Errorf("got %q", in.Container.HostNamespaces)
	}
	// Exact comparisons, as the daemon's IsHost: "HOST" is a network name.
	in = create(`{"Image":"a","HostConfig":{"NetworkMode":"HOST","PidMode":"container:x"}}`)
	if len(in.Container.HostNamespaces) != 0 {
		t.Errorf("got %q", in.Container.HostNamespaces)
	}
	// Before API 1.41 an empty cgroupns mode is "host" on cgroup v1.
	old := Normalize(&authz.Request{RequestMethod: "POST", RequestURI: "/v1.40/containers/create", RequestBody: []byte(`{"Image":"a"}`)})
	if !slices.Equal(old.Container.HostNamespaces, []string{"cgroupns"}) {
		t.Errorf("v1.40: got %q", old.Container.HostNamespaces)
	}
}

func TestHiddenFormBody(t *testing.T) {
	in := Normalize(&authz.Request{RequestMethod: "POST", RequestURI: "/v1.41/build?remote=https://x/ctx.tar",
		RequestHeaders: map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}})
	if !in.Request.HiddenForm {
		t.Error("a form body overrides the query in r.FormValue but is never forwarded")
	}
}
