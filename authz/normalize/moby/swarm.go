package moby

import "encoding/json"

// ServiceSpec is swarm.ServiceSpec (subset), the body of POST
// /services/create and /services/{id}/update.
type ServiceSpec struct {
	Annotations
	TaskTemplate TaskSpec                  `json:",omitempty"`
	Networks     []NetworkAttachmentConfig `json:",omitempty"`
}

// Annotations is swarm.Annotations.
type Annotations struct {
	Name   string            `json:",omitempty"`
	Labels map[string]string `json:"Labels"`
}

// TaskSpec is swarm.TaskSpec (subset).
type TaskSpec struct {
	ContainerSpec *ContainerSpec `json:",omitempty"`
	// PluginSpec is set for Runtime "plugin": the swarm installs a plugin
	// on the nodes.
	PluginSpec json.RawMessage           `json:",omitempty"`
	Networks   []NetworkAttachmentConfig `json:",omitempty"`
	Runtime    string                    `json:",omitempty"`
}

// NetworkAttachmentConfig is swarm.NetworkAttachmentConfig (subset).
type NetworkAttachmentConfig struct {
	Target string `json:",omitempty"`
}

// ContainerSpec is swarm.ContainerSpec (subset).
type ContainerSpec struct {
	Image          string            `json:",omitempty"`
	Labels         map[string]string `json:",omitempty"`
	Env            []string          `json:",omitempty"`
	User           string            `json:",omitempty"`
	Privileges     *Privileges       `json:",omitempty"`
	Mounts         []Mount           `json:",omitempty"`
	Sysctls        map[string]string `json:",omitempty"`
	CapabilityAdd  []string          `json:",omitempty"`
	CapabilityDrop []string          `json:",omitempty"`
}

// Privileges is swarm.Privileges (subset).
type Privileges struct {
	SELinuxContext  *SELinuxContext
	Seccomp         *SeccompOpts  `json:",omitempty"`
	AppArmor        *AppArmorOpts `json:",omitempty"`
	NoNewPrivileges bool
}

// SELinuxContext is swarm.SELinuxContext (subset).
type SELinuxContext struct {
	Disable bool
}

// SeccompOpts is swarm.SeccompOpts (subset).
type SeccompOpts struct {
	Mode string `json:",omitempty"`
}

// AppArmorOpts is swarm.AppArmorOpts.
type AppArmorOpts struct {
	Mode string `json:",omitempty"`
}
