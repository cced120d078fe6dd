// Package moby mirrors the subset of moby's API types (api/types/...) that
// authorization decisions depend on, with the same Go field names, types,
// embedding and JSON tags, so that encoding/json decodes a request body
// into them exactly as the daemon decodes it into its own: keys matched
// case-insensitively (with Unicode folding), the last duplicate key wins,
// unknown fields ignored. Fields no decision needs are left out; leaving a
// field out changes nothing for the others, because no two moby field
// names fold to the same key.
//
// Mirrored from moby b985e2313a86 (docker-v29.7.2); the field set has been
// stable since API 1.41 (plus the legacy HostConfig.Capabilities).
package moby

// CreateRequest is container.CreateRequest, the body of POST
// /containers/create.
type CreateRequest struct {
	*Config
	HostConfig       *HostConfig       `json:"HostConfig,omitempty"`
	NetworkingConfig *NetworkingConfig `json:"NetworkingConfig,omitempty"`
}

// Config is container.Config (subset).
type Config struct {
	Hostname   string
	User       string
	Env        []string
	Image      string
	Volumes    map[string]struct{}
	WorkingDir string
	Labels     map[string]string
}

// HostConfig is container.HostConfig (subset).
type HostConfig struct {
	Binds          []string
	NetworkMode    string
	VolumeDriver   string
	VolumesFrom    []string
	Annotations    map[string]string `json:",omitempty"`
	CapAdd         []string
	CapDrop        []string
	CgroupnsMode   string
	IpcMode        string
	Cgroup         string
	PidMode        string
	Privileged     bool
	ReadonlyRootfs bool
	SecurityOpt    []string
	Tmpfs          map[string]string `json:",omitempty"`
	UTSMode        string
	UsernsMode     string
	Sysctls        map[string]string `json:",omitempty"`
	Runtime        string            `json:",omitempty"`
	Isolation      string

	Resources

	Mounts        []Mount `json:",omitempty"`
	MaskedPaths   []string
	ReadonlyPaths []string
	Init          *bool `json:",omitempty"`

	// Capabilities is the legacy full capability set (API 1.40 on older
	// daemons; HEAD decodes it separately to reject it).
	Capabilities []string `json:",omitempty"`
}

// Resources is container.Resources (subset).
type Resources struct {
	CgroupParent      string
	Devices           []DeviceMapping
	DeviceCgroupRules []string
	DeviceRequests    []DeviceRequest
}

// UpdateConfig is container.UpdateConfig, the body of POST
// /containers/{name}/update.
type UpdateConfig struct {
	Resources
	RestartPolicy RestartPolicy
}

// RestartPolicy is container.RestartPolicy.
type RestartPolicy struct {
	Name              string
	MaximumRetryCount int
}

// DeviceMapping is container.DeviceMapping.
type DeviceMapping struct {
	PathOnHost        string
	PathInContainer   string
	CgroupPermissions string
}

// DeviceRequest is container.DeviceRequest.
type DeviceRequest struct {
	Driver       string
	Count        int
	DeviceIDs    []string
	Capabilities [][]string
	Options      map[string]string
}

// NetworkingConfig is network.NetworkingConfig (keys only).
type NetworkingConfig struct {
	EndpointsConfig map[string]*struct{}
}

// Mount is mount.Mount (subset).
type Mount struct {
	Type          string         `json:",omitempty"`
	Source        string         `json:",omitempty"`
	Target        string         `json:",omitempty"`
	ReadOnly      bool           `json:",omitempty"`
	BindOptions   *BindOptions   `json:",omitempty"`
	VolumeOptions *VolumeOptions `json:",omitempty"`
}

// BindOptions is mount.BindOptions (subset).
type BindOptions struct {
	Propagation      string `json:",omitempty"`
	CreateMountpoint bool   `json:",omitempty"`
}

// VolumeOptions is mount.VolumeOptions (subset).
type VolumeOptions struct {
	NoCopy       bool              `json:",omitempty"`
	Labels       map[string]string `json:",omitempty"`
	Subpath      string            `json:",omitempty"`
	DriverConfig *Driver           `json:",omitempty"`
}

// Driver is mount.Driver.
type Driver struct {
	Name    string            `json:",omitempty"`
	Options map[string]string `json:",omitempty"`
}

// ExecOptions is container.ExecOptions, the body of POST
// /containers/{name}/exec.
type ExecOptions struct {
	User       string
	Privileged bool
	Tty        bool
	Env        []string
	WorkingDir string
	Cmd        []string
}

// VolumeCreateOptions is volume.CreateOptions, the body of POST
// /volumes/create.
type VolumeCreateOptions struct {
	Driver     string            `json:"Driver,omitempty"`
	DriverOpts map[string]string `json:"DriverOpts,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
	Name       string            `json:"Name,omitempty"`
}

// PluginPrivilege is plugin.Privilege; the pull and upgrade bodies are a
// list of them.
type PluginPrivilege struct {
	Name        string
	Description string
	Value       []string
}
