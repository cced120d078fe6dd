package normalize

// The views a policy sees. Field names in CEL are the `cel` tags. Every
// view is always present (zero when the request is not of its kind), so
// that a rule about one kind of request never fails on another.

// Input is a normalised AuthZReq: what the daemon will do.
type Input struct {
	Request   Request   `cel:"request"`
	User      User      `cel:"user"`
	Container Container `cel:"container"`
	Exec      Exec      `cel:"exec"`
	Volume    Volume    `cel:"volume"`
	Service   Service   `cel:"service"`
	Plugin    Plugin    `cel:"plugin"`
	Build     Build     `cel:"build"`
	// Problem is set when the request cannot be judged: no route, or a
	// guarded endpoint whose body is missing or does not decode. Such a
	// request is denied whatever the policy says.
	Problem string `cel:"-"`
	// ProblemKind is "route", "missing-body" or "bad-body".
	ProblemKind string `cel:"-"`
}

// Request is the routed request.
type Request struct {
	Method string `cel:"method"`
	// Action is the route's action name, e.g. "container.create".
	Action string `cel:"action"`
	// Path is the decoded path the router matched.
	Path    string `cel:"path"`
	Route   string `cel:"route"`
	Version string `cel:"version"`
	// Params are the path variables: name, id, checkpoint.
	Params map[string]string `cel:"params"`
	// Query holds the first value of each query parameter, as the daemon's
	// r.Form.Get and FormValue read it; QueryAll every value.
	Query    map[string]string   `cel:"query"`
	QueryAll map[string][]string `cel:"queryAll"`
	// ContentType is the media type of the body ("" without one).
	ContentType string `cel:"contentType"`
	HasBody     bool   `cel:"hasBody"`
	// HiddenForm: a POST/PUT/PATCH with a form body (urlencoded or
	// multipart). The daemon's r.Form and FormValue read its values, and
	// they override the query string, but the daemon never forwards such
	// a body to the plugin.
	HiddenForm bool `cel:"hiddenForm"`
}

// User is who is asking.
type User struct {
	// Name is the TLS client certificate's CN (empty over the unix socket).
	Name string `cel:"name"`
	// AuthMethod is "TLS" when Name is set.
	AuthMethod string `cel:"authMethod"`
	// UID and GID are -1 when unknown (no identity proxy).
	UID    int64    `cel:"uid"`
	GID    int64    `cel:"gid"`
	Groups []string `cel:"groups"`
}

// Container is the effective configuration of a container create (and, for
// the resources fields, update).
type Container struct {
	Name     string            `cel:"name"`
	Image    string            `cel:"image"`
	User     string            `cel:"user"`
	Hostname string            `cel:"hostname"`
	EnvNames []string          `cel:"envNames"` // names only: values may be secrets
	Labels   map[string]string `cel:"labels"`

	Privileged     bool   `cel:"privileged"`
	ReadonlyRootfs bool   `cel:"readonlyRootfs"`
	Runtime        string `cel:"runtime"`
	NetworkMode    string `cel:"networkMode"`
	PidMode        string `cel:"pidMode"`
	IpcMode        string `cel:"ipcMode"`
	UTSMode        string `cel:"utsMode"`
	UsernsMode     string `cel:"usernsMode"`
	CgroupnsMode   string `cel:"cgroupnsMode"`
	// HostNamespaces lists the host namespaces the container joins:
	// network, pid, ipc, uts, userns, cgroupns.
	HostNamespaces []string `cel:"hostNamespaces"`

	// Binds are the host paths that will be bind-mounted, cleaned: from
	// Binds, bind Mounts, and local-driver volume mounts that bind a host
	// path (o=bind, device=...).
	Binds []string `cel:"binds"`
	// Volumes are the named volumes used.
	Volumes     []string `cel:"volumes"`
	VolumesFrom []string `cel:"volumesFrom"`
	// HostMounts lists local-driver volume mounts that mount a host device
	// or filesystem other than by bind (type=ext4 device=/dev/sda1,
	// type=overlay o=lowerdir=/): as "type:device".
	HostMounts []string `cel:"hostMounts"`

	CapAdd  []string `cel:"capAdd"`  // normalised as the daemon does
	CapDrop []string `cel:"capDrop"` // normalised
	// Caps is the effective capability set; AddedCaps what it holds
	// beyond Docker's default set.
	Caps      []string `cel:"caps"`
	AddedCaps []string `cel:"addedCaps"`
	// LegacyCapabilities is HostConfig.Capabilities (API 1.40).
	LegacyCapabilities []string `cel:"legacyCapabilities"`

	Devices           []string `cel:"devices"` // PathOnHost of each device
	DeviceCgroupRules []string `cel:"deviceCgroupRules"`
	DeviceRequests    int64    `cel:"deviceRequests"`

	SecurityOpt []string `cel:"securityOpt"`
	// Unconfined lists the confinements the container drops: seccomp,
	// seccomp-custom, apparmor, label, systempaths, masked-paths,
	// readonly-paths, writable-cgroups.
	Unconfined   []string          `cel:"unconfined"`
	Sysctls      map[string]string `cel:"sysctls"`
	CgroupParent string            `cel:"cgroupParent"`
	Annotations  map[string]string `cel:"annotations"`
}

// Exec is an exec create.
type Exec struct {
	Container  string   `cel:"container"`
	Privileged bool     `cel:"privileged"`
	User       string   `cel:"user"`
	Cmd        []string `cel:"cmd"`
	EnvNames   []string `cel:"envNames"`
	WorkingDir string   `cel:"workingDir"`
}

// Volume is a volume create.
type Volume struct {
	Name    string            `cel:"name"`
	Driver  string            `cel:"driver"` // "local" when empty
	Options map[string]string `cel:"options"`
	Labels  map[string]string `cel:"labels"`
	// HostPaths are the host paths a local volume binds (o=bind device=).
	HostPaths []string `cel:"hostPaths"`
	// HostMounts as in Container.
	HostMounts []string `cel:"hostMounts"`
}

// Service is a swarm service create or update.
type Service struct {
	Name        string   `cel:"name"`
	Image       string   `cel:"image"`
	EnvNames    []string `cel:"envNames"`
	Binds       []string `cel:"binds"`
	Volumes     []string `cel:"volumes"`
	HostMounts  []string `cel:"hostMounts"`
	CapAdd      []string `cel:"capAdd"`
	CapDrop     []string `cel:"capDrop"`
	AddedCaps   []string `cel:"addedCaps"`
	Networks    []string `cel:"networks"`
	HostNetwork bool     `cel:"hostNetwork"`
	Unconfined  []string `cel:"unconfined"`
	// PluginRuntime: the service installs a plugin on the nodes.
	PluginRuntime bool `cel:"pluginRuntime"`
}

// Plugin is a plugin call (name from the path, remote from the query).
type Plugin struct {
	Name       string      `cel:"name"`
	Remote     string      `cel:"remote"`
	Privileges []Privilege `cel:"privileges"`
	// Settings are the keys of a plugin set (KEY=VALUE, values dropped).
	Settings []string `cel:"settings"`
}

// Privilege is one privilege a plugin is granted.
type Privilege struct {
	Name  string   `cel:"name"`
	Value []string `cel:"value"`
}

// Build is an image build (POST /build), from its query.
type Build struct {
	NetworkMode string   `cel:"networkMode"`
	Remote      string   `cel:"remote"`
	Dockerfile  string   `cel:"dockerfile"`
	Tags        []string `cel:"tags"`
	// BuildKit is true for version=2 builds.
	BuildKit bool `cel:"buildkit"`
}
