package volume

import "time"

// Kind is the string a volume plugin lists in Plugin.Activate's
// "Implements" (case-sensitive, G20).
const Kind = "VolumeDriver"

// Full method names, as in the request path POST /<method>.
const (
	MethodCreate       = "VolumeDriver.Create"
	MethodRemove       = "VolumeDriver.Remove"
	MethodMount        = "VolumeDriver.Mount"
	MethodUnmount      = "VolumeDriver.Unmount"
	MethodPath         = "VolumeDriver.Path"
	MethodGet          = "VolumeDriver.Get"
	MethodList         = "VolumeDriver.List"
	MethodCapabilities = "VolumeDriver.Capabilities"
)

// Scopes a driver reports in Capabilities.
const (
	ScopeLocal  = "local"  // volumes exist on this host only (the default)
	ScopeGlobal = "global" // the same volume is visible from every host
)

// Request keys carry no omitempty: the daemon encodes all its fields (Opts
// as null when there are none), and the Client sends what the daemon sends.

// CreateRequest asks to create volume Name with the user's -o options.
type CreateRequest struct {
	Name string            `json:"Name"`
	Opts map[string]string `json:"Opts"`
}

// RemoveRequest asks to delete volume Name and its data.
type RemoveRequest struct {
	Name string `json:"Name"`
}

// MountRequest asks to make volume Name available on the host. ID is an
// opaque 64-hex value, reused for further mounts while the container runs
// (G1): count Mounts per (Name, ID), do not collect IDs in a set.
type MountRequest struct {
	Name string `json:"Name"`
	ID   string `json:"ID"`
}

// MountResponse is the host path the container's mount is bound from.
type MountResponse struct {
	Mountpoint string `json:"Mountpoint"`
}

// UnmountRequest releases one earlier successful Mount with the same ID.
type UnmountRequest struct {
	Name string `json:"Name"`
	ID   string `json:"ID"`
}

// PathRequest asks where volume Name is mounted.
type PathRequest struct {
	Name string `json:"Name"`
}

// PathResponse is the volume's host path ("" if not mounted).
type PathResponse struct {
	Mountpoint string `json:"Mountpoint"`
}

// GetRequest asks whether volume Name exists.
type GetRequest struct {
	Name string `json:"Name"`
}

// GetResponse answers Get. A nil Volume means "no such volume", with the
// consequences described in the package doc (G2).
type GetResponse struct {
	Volume *Volume `json:"Volume"`
}

// ListResponse answers List. Volumes must not hold nil entries.
type ListResponse struct {
	Volumes []*Volume `json:"Volumes"`
}

// CapabilitiesResponse answers Capabilities.
type CapabilitiesResponse struct {
	Capabilities Capability `json:"Capabilities"`
}

// Capability describes the driver; only Scope exists.
type Capability struct {
	Scope string `json:"Scope"`
}

// Volume is a volume as the daemon reads it from Get and List.
type Volume struct {
	Name string `json:"Name"`
	// Mountpoint is the host path, if known (shown by docker volume
	// inspect; for managed plugins, from Get unscoped, G5).
	Mountpoint string `json:"Mountpoint,omitempty"`
	// CreatedAt is encoded as RFC 3339 and omitted when zero: the daemon
	// decodes it into a time.Time and fails the whole answer on any other
	// format.
	CreatedAt time.Time `json:"CreatedAt,omitzero"`
	// Status is free-form, shown by docker volume inspect.
	Status map[string]any `json:"Status,omitempty"`
}

// Client-side decoding targets: every answer may carry "Err" besides its
// fields. Drivers never see Err; they return an error instead.
type (
	errReply   struct{ Err string }
	mountReply struct {
		MountResponse
		Err string
	}
	pathReply struct {
		PathResponse
		Err string
	}
	getReply struct {
		GetResponse
		Err string
	}
	listReply struct {
		ListResponse
		Err string
	}
	capabilitiesReply struct {
		CapabilitiesResponse
		Err string
	}
)
