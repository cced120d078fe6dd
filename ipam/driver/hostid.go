package driver

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dockplug/dockplug/store/durable"
)

// HostIDFile is the file in the state dir that keeps the host ID.
const HostIDFile = "host-id"

// LoadHostID returns the host ID kept in dir/host-id, generating it on
// first use, as dockerd keeps its engine ID. The file is created whole or
// not at all (fsync'd, then linked, then its directory fsync'd), so power
// loss cannot leave it empty. A file that is empty or does not hold an ID
// (32 lowercase hex digits on one line) is refused rather than replaced:
// this host's pools and addresses are recorded under its ID, and a new ID
// would silently make it another host.
func LoadHostID(dir string) (string, error) {
	path := filepath.Join(dir, HostIDFile)
	id, err := readHostID(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("ipam: host ID: %w", err)
	}
	var raw [16]byte
	rand.Read(raw[:])
	id = hex.EncodeToString(raw[:])
	created, err := durable.CreateFile(path, []byte(id+"\n"), 0o600)
	if err != nil {
		return "", fmt.Errorf("ipam: host ID: %w", err)
	}
	if !created { // another process created it first: use that one
		return readHostID(path)
	}
	return id, nil
}

// readHostID reads and checks a host ID file; a missing file is an error
// that wraps fs.ErrNotExist.
func readHostID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("ipam: host ID: %w", err)
	}
	id := strings.TrimSuffix(string(b), "\n")
	if validHostID(id) {
		return id, nil
	}
	what := "it is empty"
	if len(b) > 0 {
		q := id
		if len(q) > 40 {
			q = q[:40] + "..."
		}
		what = fmt.Sprintf("it holds %q", q)
	}
	return "", fmt.Errorf("ipam: the host ID file %s is damaged: %s. "+
		"It must hold this host's ID, 32 lowercase hex digits on one line; its pools and addresses are recorded under that ID, and a new one would make it another host, so the plugin does not start. "+
		"To fix it, write the old ID back (from a backup, or, with the global space, from the hosts named in the pool records in etcd), "+
		"or pass --ipam-host-id=ID; if this host has no pools to keep, remove the file and a new ID is generated", path, what)
}

func validHostID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
