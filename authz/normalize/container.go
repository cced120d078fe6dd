package normalize

import (
	"encoding/json"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/dockplug/dockplug/authz/normalize/moby"
)

// defaultMaskedPaths and defaultReadonlyPaths are moby's
// daemon/pkg/oci/defaults.go lists (the per-CPU thermal_throttle paths
// left out). An explicit MaskedPaths or ReadonlyPaths replaces them
// (daemon/create_unix.go only fills them when nil): an explicit list that
// leaves one out unmasks it, as --security-opt systempaths=unconfined does.
var (
	defaultMaskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore",
		"/proc/keys", "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
		"/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware"}
	defaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

func containerView(w *moby.CreateRequest, req Request) Container {
	hc := w.HostConfig
	if hc == nil {
		hc = &moby.HostConfig{} // runconfig's decodeCreateRequest does the same
	}
	c := resourcesView(&hc.Resources)
	c.Name = req.Query["name"]
	c.Image, c.User, c.Hostname = w.Image, w.User, w.Hostname
	c.EnvNames, c.Labels = envNames(w.Env), nonNilMap(w.Labels)
	c.Privileged, c.ReadonlyRootfs, c.Runtime = hc.Privileged, hc.ReadonlyRootfs, hc.Runtime
	c.NetworkMode, c.PidMode, c.IpcMode = hc.NetworkMode, hc.PidMode, hc.IpcMode
	c.UTSMode, c.UsernsMode, c.CgroupnsMode = hc.UTSMode, hc.UsernsMode, hc.CgroupnsMode
	c.Sysctls, c.Annotations = nonNilMap(hc.Sysctls), nonNilMap(hc.Annotations)
	c.VolumesFrom = nonNil(hc.VolumesFrom)
	c.SecurityOpt = nonNil(hc.SecurityOpt)
	c.LegacyCapabilities = NormalizeCaps(hc.Capabilities)

	// Namespace modes are compared exactly, as the daemon's IsHost does.
	c.HostNamespaces = []string{}
	hostEndpoint := false
	if w.NetworkingConfig != nil {
		_, hostEndpoint = w.NetworkingConfig.EndpointsConfig["host"]
	}
	if hc.NetworkMode == "host" || hostEndpoint {
		c.HostNamespaces = append(c.HostNamespaces, "network")
	}
	if hc.PidMode == "host" {
		c.HostNamespaces = append(c.HostNamespaces, "pid")
	}
	if hc.IpcMode == "host" {
		c.HostNamespaces = append(c.HostNamespaces, "ipc")
	}
	if hc.UTSMode == "host" {
		c.HostNamespaces = append(c.HostNamespaces, "uts")
	}
	if hc.UsernsMode == "host" {
		c.HostNamespaces = append(c.HostNamespaces, "userns")
	}
	// Before API 1.41 an empty cgroupns mode means "host" on cgroup v1
	// hosts (postContainersCreate); the plugin cannot tell the host's
	// cgroup version, so it assumes v1.
	if hc.CgroupnsMode == "host" || (hc.CgroupnsMode == "" && req.Version != "" && versionLess(req.Version, "1.41")) {
		c.HostNamespaces = append(c.HostNamespaces, "cgroupns")
	}

	c.Binds, c.Volumes, c.HostMounts = []string{}, []string{}, []string{}
	for _, b := range hc.Binds {
		src, isBind := parseBind(b)
		switch {
		case isBind:
			c.Binds = append(c.Binds, src)
		case src != "":
			c.Volumes = append(c.Volumes, src)
		}
	}
	for _, m := range hc.Mounts {
		addMount(m, hc.VolumeDriver, &c.Binds, &c.Volumes, &c.HostMounts)
	}

	c.CapAdd, c.CapDrop = NormalizeCaps(hc.CapAdd), NormalizeCaps(hc.CapDrop)
	c.Caps = EffectiveCaps(hc.CapAdd, hc.CapDrop, hc.Privileged)
	c.AddedCaps = AddedCaps(append(slices.Clone(c.Caps), c.LegacyCapabilities...))

	c.Unconfined = securityUnconfined(hc.SecurityOpt)
	if hc.MaskedPaths != nil && !containsAll(hc.MaskedPaths, defaultMaskedPaths) {
		c.Unconfined = appendOnce(c.Unconfined, "masked-paths")
	}
	if hc.ReadonlyPaths != nil && !containsAll(hc.ReadonlyPaths, defaultReadonlyPaths) {
		c.Unconfined = appendOnce(c.Unconfined, "readonly-paths")
	}
	return c
}

func resourcesView(r *moby.Resources) Container {
	c := Container{Devices: []string{}, DeviceCgroupRules: nonNil(r.DeviceCgroupRules),
		DeviceRequests: int64(len(r.DeviceRequests)), CgroupParent: r.CgroupParent}
	for _, d := range r.Devices {
		c.Devices = append(c.Devices, d.PathOnHost)
	}
	return c
}

// parseBind reads a Binds entry as moby's linux mount parser does
// (src:dst[:mode], split on ':'; an absolute source is a bind, anything
// else a volume name). It returns the cleaned host path for a bind.
func parseBind(spec string) (src string, isBind bool) {
	parts := strings.SplitN(spec, ":", 4)
	if len(parts) < 2 {
		return "", false // an anonymous volume at the given target
	}
	src = parts[0]
	if path.IsAbs(src) {
		return path.Clean(src), true
	}
	return src, false
}

// addMount adds a HostConfig.Mounts (or service) entry's effect.
func addMount(m moby.Mount, defaultDriver string, binds, volumes, hostMounts *[]string) {
	switch {
	case strings.EqualFold(m.Type, "bind"):
		src := m.Source
		if !path.IsAbs(src) {
			src = "/" + src // the daemon refuses relative sources; judge it as a path anyway
		}
		*binds = append(*binds, path.Clean(src))
	case strings.EqualFold(m.Type, "volume"):
		if m.Source != "" {
			*volumes = append(*volumes, m.Source)
		}
		if m.VolumeOptions == nil || m.VolumeOptions.DriverConfig == nil {
			return
		}
		driver := m.VolumeOptions.DriverConfig.Name
		if driver == "" {
			driver = defaultDriver
		}
		if isLocalDriver(driver) {
			b, hm := localVolumeEffects(m.VolumeOptions.DriverConfig.Options)
			*binds = append(*binds, b...)
			*hostMounts = append(*hostMounts, hm...)
		}
	}
}

func isLocalDriver(d string) bool {
	return d == "" || strings.EqualFold(d, "local") || strings.EqualFold(d, "local:latest")
}

// safeLocalTypes are local-volume filesystem types that never expose the
// host: in-memory, or remote.
var safeLocalTypes = []string{"tmpfs", "nfs", "nfs4", "cifs", "smb3"}

// localVolumeEffects is what moby's volume/local driver will mount for
// these options (mount(device, _data, type, o)): a bind of a host path when
// o has bind or rbind, otherwise a mount of a host device or filesystem
// unless the type is in-memory or remote.
func localVolumeEffects(opts map[string]string) (binds, hostMounts []string) {
	device, typ, o := opts["device"], opts["type"], opts["o"]
	if device == "" && typ == "" {
		return nil, nil // a plain directory volume
	}
	for _, f := range strings.Split(o, ",") {
		if f == "bind" || f == "rbind" {
			src := device
			if !path.IsAbs(src) {
				src = "/" + src
			}
			return []string{path.Clean(src)}, nil
		}
	}
	if slices.Contains(safeLocalTypes, typ) {
		return nil, nil
	}
	return nil, []string{typ + ":" + device}
}

func volumeView(v *moby.VolumeCreateOptions) Volume {
	vol := Volume{Name: v.Name, Driver: v.Driver, Options: nonNilMap(v.DriverOpts), Labels: nonNilMap(v.Labels),
		HostPaths: []string{}, HostMounts: []string{}}
	if vol.Driver == "" {
		vol.Driver = "local"
	}
	if isLocalDriver(vol.Driver) {
		b, hm := localVolumeEffects(v.DriverOpts)
		vol.HostPaths = append(vol.HostPaths, b...)
		vol.HostMounts = append(vol.HostMounts, hm...)
	}
	return vol
}

func serviceView(s *moby.ServiceSpec) Service {
	sv := Service{Name: s.Name, Binds: []string{}, Volumes: []string{}, HostMounts: []string{},
		Networks: []string{}, Unconfined: []string{}, EnvNames: []string{}}
	t := s.TaskTemplate
	p := strings.TrimSpace(string(t.PluginSpec))
	sv.PluginRuntime = t.Runtime == "plugin" || (p != "" && p != "null")
	for _, n := range append(slices.Clone(t.Networks), s.Networks...) {
		sv.Networks = append(sv.Networks, n.Target)
		if n.Target == "host" {
			sv.HostNetwork = true
		}
	}
	cs := t.ContainerSpec
	if cs == nil {
		sv.AddedCaps = []string{}
		return sv
	}
	sv.Image, sv.EnvNames = cs.Image, envNames(cs.Env)
	for _, m := range cs.Mounts {
		addMount(m, "", &sv.Binds, &sv.Volumes, &sv.HostMounts)
	}
	sv.CapAdd, sv.CapDrop = NormalizeCaps(cs.CapabilityAdd), NormalizeCaps(cs.CapabilityDrop)
	sv.AddedCaps = AddedCaps(EffectiveCaps(cs.CapabilityAdd, cs.CapabilityDrop, false))
	if pr := cs.Privileges; pr != nil {
		if pr.Seccomp != nil && pr.Seccomp.Mode == "unconfined" {
			sv.Unconfined = append(sv.Unconfined, "seccomp")
		}
		if pr.Seccomp != nil && pr.Seccomp.Mode == "custom" {
			sv.Unconfined = append(sv.Unconfined, "seccomp-custom")
		}
		if pr.AppArmor != nil && pr.AppArmor.Mode == "disabled" {
			sv.Unconfined = append(sv.Unconfined, "apparmor")
		}
		if pr.SELinuxContext != nil && pr.SELinuxContext.Disable {
			sv.Unconfined = append(sv.Unconfined, "label")
		}
	}
	return sv
}

// securityUnconfined reads SecurityOpt as the daemon's parseSecurityOpt
// does (bare "disable", "no-new-privileges", "writable-cgroups"; then
// key=value, or the legacy key:value when there is no '='), and lists the
// confinements the options drop.
func securityUnconfined(opts []string) []string {
	out := []string{}
	for _, opt := range opts {
		switch opt {
		case "disable":
			out = appendOnce(out, "label")
			continue
		case "writable-cgroups":
			out = appendOnce(out, "writable-cgroups")
			continue
		}
		var k, v string
		if strings.Contains(opt, "=") {
			k, v, _ = strings.Cut(opt, "=")
		} else {
			k, v, _ = strings.Cut(opt, ":")
		}
		switch k {
		case "seccomp":
			switch {
			case v == "unconfined":
				out = appendOnce(out, "seccomp")
			case v != "" && v != "builtin" && json.Valid([]byte(v)):
				// A custom profile can allow everything; it cannot be
				// judged without reimplementing seccomp.
				out = appendOnce(out, "seccomp-custom")
			}
		case "apparmor":
			if v == "unconfined" {
				out = appendOnce(out, "apparmor")
			}
		case "label":
			if v == "disable" || v == "type:spc_t" || v == "type:unconfined_t" {
				out = appendOnce(out, "label")
			}
		case "systempaths":
			if v == "unconfined" {
				out = appendOnce(out, "systempaths")
			}
		case "writable-cgroups":
			if b := strings.ToLower(v); b == "1" || b == "t" || b == "true" {
				out = appendOnce(out, "writable-cgroups")
			}
		}
	}
	return out
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func appendOnce(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// versionLess compares API versions part by part as moby's
// versions.LessThan does (non-numbers count as 0).
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x = atoi(pa[i])
		}
		if i < len(pb) {
			y = atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// atoi is strconv.Atoi ignoring its error, as moby's compare does (an
// out-of-range part reads as the largest int).
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
