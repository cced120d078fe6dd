package proxy

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Cred is a caller's identity as the kernel reports it.
type Cred struct {
	UID, GID uint32
	PID      int32
}

// PeerCred reads SO_PEERCRED of a unix socket connection: the uid, gid
// and pid of the process that connected, as of connect(2).
func PeerCred(c net.Conn) (Cred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Cred{}, fmt.Errorf("peer credentials: %T is not a unix socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var uc2 *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		uc2, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("peer credentials: SO_PEERCRED: %w", serr)
	}
	if uc2 == nil {
		return Cred{}, errors.New("peer credentials: none")
	}
	return Cred{UID: uc2.Uid, GID: uc2.Gid, PID: uc2.Pid}, nil
}
