// Package authz benchmarks one dockplug-authz decision against OPA's
// prepared Rego query and against the JSON decoding floor.
package authz

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dockplug/dockplug/authz"
)

// CreateBody is a container create as the docker CLI (28.x) posts it for
//
//	docker run -d --name web --restart unless-stopped -p 8080:80 -v /srv/data/web:/usr/share/nginx/html:ro \
//	  --memory 512m --cpus 1.5 --label ... -e ... --health-cmd ... nginx:1.27.3
//
// padded with environment and labels to about 2 KiB.
func CreateBody() []byte {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.27.3",
		"NJS_VERSION=0.8.8", "NJS_RELEASE=1~bookworm", "PKG_RELEASE=1~bookworm", "TZ=Europe/Berlin",
		"APP_ENV=production", "APP_SECRET=s3cr3t-do-not-log-8f9a7c6b5d4e3f2a1b0c", "UPSTREAM=http://api.internal:9000"}
	labels := map[string]string{"com.example.team": "web", "com.example.owner": "alice@example.com",
		"com.example.cost-centre": "cc-4711", "org.opencontainers.image.source": "https://github.com/example/web",
		"traefik.enable": "true", "traefik.http.routers.web.rule": "Host(`www.example.com`)"}
	body := map[string]any{
		"Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
		"ExposedPorts": map[string]any{"80/tcp": map[string]any{}}, "Tty": false, "OpenStdin": false, "StdinOnce": false,
		"Env": env, "Cmd": nil, "Healthcheck": map[string]any{"Test": []string{"CMD-SHELL", "curl -fsS http://localhost/ || exit 1"},
			"Interval": 30000000000, "Timeout": 5000000000, "Retries": 3},
		"Image": "nginx:1.27.3", "Volumes": nil, "WorkingDir": "", "Entrypoint": nil, "OnBuild": nil, "Labels": labels,
		"HostConfig": map[string]any{
			"Binds": []string{"/srv/data/web:/usr/share/nginx/html:ro"}, "ContainerIDFile": "",
			"LogConfig":   map[string]any{"Type": "", "Config": map[string]any{}},
			"NetworkMode": "default", "PortBindings": map[string]any{"80/tcp": []map[string]string{{"HostIp": "", "HostPort": "8080"}}},
			"RestartPolicy": map[string]any{"Name": "unless-stopped", "MaximumRetryCount": 0}, "AutoRemove": false,
			"VolumeDriver": "", "VolumesFrom": nil, "ConsoleSize": []int{0, 0}, "CapAdd": nil, "CapDrop": nil,
			"CgroupnsMode": "", "Dns": []string{}, "DnsOptions": []string{}, "DnsSearch": []string{}, "ExtraHosts": nil,
			"GroupAdd": nil, "IpcMode": "", "Cgroup": "", "Links": nil, "OomScoreAdj": 0, "PidMode": "", "Privileged": false,
			"PublishAllPorts": false, "ReadonlyRootfs": false, "SecurityOpt": nil, "UTSMode": "", "UsernsMode": "",
			"ShmSize": 0, "Isolation": "", "CpuShares": 0, "Memory": 536870912, "NanoCpus": 1500000000, "CgroupParent": "",
			"BlkioWeight": 0, "BlkioWeightDevice": []any{}, "BlkioDeviceReadBps": []any{}, "BlkioDeviceWriteBps": []any{},
			"BlkioDeviceReadIOps": []any{}, "BlkioDeviceWriteIOps": []any{}, "CpuPeriod": 0, "CpuQuota": 0,
			"CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": []any{},
			"DeviceCgroupRules": nil, "DeviceRequests": nil, "MemoryReservation": 0, "MemorySwap": 0,
			"MemorySwappiness": nil, "OomKillDisable": false, "PidsLimit": nil, "Ulimits": []any{}, "CpuCount": 0,
			"CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": nil, "ReadonlyPaths": nil,
		},
		"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{"default": map[string]any{}}},
	}
	b, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	return b
}

// Request is the AuthZReq dockerd sends for CreateBody.
func Request(body []byte) *authz.Request {
	return &authz.Request{RequestMethod: "POST", RequestURI: "/v1.51/containers/create?name=web",
		RequestHeaders: map[string]string{"Content-Type": "application/json", "User-Agent": "Docker-Client/28.5.2 (linux)",
			"Content-Length": fmt.Sprint(len(body))}, RequestBody: body}
}

// Privileged is CreateBody with Privileged set (denied by both policies).
func Privileged() []byte {
	return []byte(strings.Replace(string(CreateBody()), `"Privileged":false`, `"Privileged":true`, 1))
}

// Policy is the dockplug policy: the baseline preset's 21 rules and 4 of
// the operator's, 25 rules.
const Policy = `presets: [baseline]
allow-bind: [/srv/data]
rules:
  - name: no-latest
    deny: 'request.action == "container.create" && (container.image.endsWith(":latest") || !container.image.contains(":"))'
    message: "pin an image tag"
  - name: trusted-registries
    deny: 'request.action == "container.create" && container.image.startsWith("evil.example/")'
  - name: team-label
    deny: 'request.action == "container.create" && !("com.example.team" in container.labels)'
    message: "label your container with its team"
  - name: ci-may-exec
    allow: 'user.name == "ci" && request.action == "container.exec.create"'
default: allow
`

// Rego is an equivalent policy for OPA (the input is the AuthZReq with
// its body decoded, as opa-docker-authz builds it): the same 25 checks
// on a container create, written the usual way (exact JSON keys).
const Rego = `package docker.authz

import rego.v1

default allow := false

allow if {
	count(deny) == 0
}

create if {
	input.Method == "POST"
	regex.match("^(/v[0-9.]+)?/containers/create$", input.Path)
}

hc := object.get(input.Body, "HostConfig", {})

deny contains "privileged" if { create; hc.Privileged == true }
deny contains "host-network" if { create; hc.NetworkMode == "host" }
deny contains "host-pid" if { create; hc.PidMode == "host" }
deny contains "host-ipc" if { create; hc.IpcMode == "host" }
deny contains "host-uts" if { create; hc.UTSMode == "host" }
deny contains "host-userns" if { create; hc.UsernsMode == "host" }
deny contains "host-cgroupns" if { create; hc.CgroupnsMode == "host" }
deny contains "binds" if {
	create
	some b in object.get(hc, "Binds", [])
	src := split(b, ":")[0]
	not startswith(src, "/srv/data/")
	src != "/srv/data"
}
deny contains "mounts" if { create; some m in object.get(hc, "Mounts", []); m.Type == "bind"; not startswith(m.Source, "/srv/data/") }
deny contains "caps" if {
	create
	some c in object.get(hc, "CapAdd", [])
	not upper(trim_prefix(upper(c), "CAP_")) in {"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}
}
deny contains "devices" if { create; count(object.get(hc, "Devices", [])) > 0 }
deny contains "device-cgroup-rules" if { create; count(object.get(hc, "DeviceCgroupRules", [])) > 0 }
deny contains "device-requests" if { create; count(object.get(hc, "DeviceRequests", [])) > 0 }
deny contains "seccomp" if { create; some o in object.get(hc, "SecurityOpt", []); startswith(o, "seccomp") }
deny contains "apparmor" if { create; some o in object.get(hc, "SecurityOpt", []); o == "apparmor=unconfined" }
deny contains "selinux" if { create; some o in object.get(hc, "SecurityOpt", []); o == "label=disable" }
deny contains "systempaths" if { create; some o in object.get(hc, "SecurityOpt", []); o == "systempaths=unconfined" }
deny contains "masked-paths" if { create; is_array(hc.MaskedPaths) }
deny contains "volumes-from" if { create; count(object.get(hc, "VolumesFrom", [])) > 0 }
deny contains "sysctls" if { create; some k, _ in object.get(hc, "Sysctls", {}); startswith(k, "kernel.") }
deny contains "plugins" if { regex.match("^(/v[0-9.]+)?/plugins/", input.Path); input.Method != "GET" }
deny contains "no-latest" if { create; endswith(input.Body.Image, ":latest") }
deny contains "no-tag" if { create; not contains(input.Body.Image, ":") }
deny contains "trusted-registries" if { create; startswith(input.Body.Image, "evil.example/") }
deny contains "team-label" if { create; not input.Body.Labels["com.example.team"] }
`
