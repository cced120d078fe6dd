package normalize

import (
	"slices"
	"strings"
)

// DefaultCaps is Docker's default capability set (moby
// daemon/pkg/oci/caps/defaults.go).
var DefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// AllCaps is every capability the Linux kernel defines (up to
// CAP_CHECKPOINT_RESTORE, 40): what "ALL" and privileged expand to.
var AllCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// NormalizeCaps is moby's caps.NormalizeLegacyCapabilities without the
// validation: strings.ToUpper (Unicode-aware, so "ſys_admin" is
// CAP_SYS_ADMIN), "ALL" kept, CAP_ prefix added.
func NormalizeCaps(caps []string) []string {
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		c = strings.ToUpper(c)
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out = append(out, c)
	}
	return out
}

// EffectiveCaps is moby's caps.TweakCapabilities over the default set:
// the capabilities the container's process will hold. Unknown names are
// kept (the daemon refuses them; a policy sees them as added).
func EffectiveCaps(add, drop []string, privileged bool) []string {
	if privileged {
		return slices.Clone(AllCaps)
	}
	if len(add) == 0 && len(drop) == 0 {
		return slices.Clone(DefaultCaps)
	}
	capDrop, capAdd := NormalizeCaps(drop), NormalizeCaps(add)
	var caps []string
	switch {
	case slices.Contains(capAdd, "ALL"):
		for _, c := range AllCaps {
			if !slices.Contains(capDrop, c) {
				caps = append(caps, c)
			}
		}
	case slices.Contains(capDrop, "ALL"):
		caps = capAdd
	default:
		for _, c := range DefaultCaps {
			if !slices.Contains(capDrop, c) {
				caps = append(caps, c)
			}
		}
		caps = append(caps, capAdd...)
	}
	return caps
}

// AddedCaps returns the capabilities in eff beyond Docker's default set,
// sorted and without duplicates.
func AddedCaps(eff []string) []string {
	var out []string
	for _, c := range eff {
		if !slices.Contains(DefaultCaps, c) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}
