package policy

// presets are named rule sets, evaluated before the operator's rules.
// Every preset rule is a deny: presets can only tighten.
var presets = map[string][]RuleSpec{
	"baseline": baseline,
}

const (
	isCreate  = `request.action == "container.create"`
	isService = `request.action in ["service.create", "service.update"]`
)

// baseline denies what lets a Docker API user take the host. Each rule
// names the daemon behaviour it guards against.
var baseline = []RuleSpec{
	{Name: "hidden-form-body", Deny: `request.hiddenForm`,
		Message: "form bodies are never forwarded to authorization plugins, but the daemon reads their values (and they override the query string)"},
	{Name: "privileged", Deny: isCreate + ` && container.privileged`,
		Message: "privileged containers are not allowed"},
	{Name: "privileged-exec", Deny: `request.action == "container.exec.create" && exec.privileged`,
		Message: "privileged exec is not allowed"},
	{Name: "host-namespaces", Deny: isCreate + ` && container.hostNamespaces.size() > 0`,
		Message: "host namespaces (network, pid, ipc, uts, userns, cgroupns) are not allowed"},
	{Name: "host-binds", Deny: isCreate + ` && container.binds.exists(p, !p.under(allowBind))`,
		Message: "binding host paths outside allow-bind is not allowed"},
	{Name: "host-device-mounts", Deny: isCreate + ` && container.hostMounts.size() > 0`,
		Message: "local volumes that mount host devices or filesystems are not allowed"},
	{Name: "volumes-from", Deny: isCreate + ` && container.volumesFrom.size() > 0`,
		Message: "volumes-from is not allowed: the other container's binds cannot be checked without asking the daemon"},
	{Name: "added-capabilities", Deny: isCreate + ` && container.addedCaps.size() > 0`,
		Message: "capabilities beyond Docker's default set are not allowed"},
	{Name: "devices", Deny: `request.action in ["container.create", "container.update"] && (container.devices.size() > 0 || container.deviceCgroupRules.size() > 0 || container.deviceRequests > 0)`,
		Message: "devices, device cgroup rules and device requests are not allowed"},
	{Name: "unconfined", Deny: isCreate + ` && container.unconfined.size() > 0`,
		Message: "security options that disable confinement (seccomp, AppArmor, SELinux, system paths, writable cgroups) are not allowed"},
	{Name: "plugin-changes", Deny: `request.action in ["plugin.install", "plugin.enable", "plugin.disable", "plugin.set", "plugin.upgrade", "plugin.remove", "plugin.create", "plugin.push"]`,
		Message: "changes to plugins are not allowed"},
	{Name: "service-binds", Deny: isService + ` && (service.binds.exists(p, !p.under(allowBind)) || service.hostMounts.size() > 0)`,
		Message: "services that bind host paths outside allow-bind or mount host devices are not allowed"},
	{Name: "service-capabilities", Deny: isService + ` && service.addedCaps.size() > 0`,
		Message: "services with capabilities beyond Docker's default set are not allowed"},
	{Name: "service-host-network", Deny: isService + ` && service.hostNetwork`,
		Message: "services on the host network are not allowed"},
	{Name: "service-unconfined", Deny: isService + ` && service.unconfined.size() > 0`,
		Message: "services that disable confinement (seccomp, AppArmor, SELinux) are not allowed"},
	{Name: "service-plugin", Deny: isService + ` && service.pluginRuntime`,
		Message: "plugin services (which install plugins on the nodes) are not allowed"},
	{Name: "swarm-membership", Deny: `request.action in ["swarm.init", "swarm.join"]`,
		Message: "creating or joining a swarm is not allowed: a swarm manager outside this plugin's reach could run anything on this node"},
	{Name: "volume-host-paths", Deny: `request.action == "volume.create" && (volume.hostPaths.exists(p, !p.under(allowBind)) || volume.hostMounts.size() > 0)`,
		Message: "local volumes that bind host paths outside allow-bind or mount host devices are not allowed"},
	{Name: "build-host-network", Deny: `request.action == "build" && build.networkMode == "host"`,
		Message: "builds with host networking are not allowed"},
	{Name: "buildkit-control-api", Deny: `request.action == "grpc"`,
		Message: "BuildKit's control API (/grpc) carries build entitlements (network.host, security.insecure) that authorization plugins never see"},
	{Name: "checkpoint-host-dir", Deny: `(request.action == "container.start" && "checkpoint-dir" in request.query) || request.action == "container.checkpoint.create"`,
		Message: "checkpoints read and write host directories"},
}
