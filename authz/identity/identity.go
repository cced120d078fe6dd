// Package identity carries the unix identity of a Docker API caller from
// dockplug's authz proxy to the dockplug-authz plugin.
//
// The daemon tells an authorization plugin who is asking only for TLS
// client certificates; over its unix socket everyone is anonymous
// (moby#35711). The proxy (package authz/proxy) sits on a socket of its
// own in front of the daemon's, reads each caller's uid and gid with
// SO_PEERCRED, drops any Header the caller sent and adds its own. The
// daemon forwards every request header to the plugin (AuthZReq's
// RequestHeaders), so the plugin reads it there.
//
// Anyone who can reach the daemon's own socket can send that header too.
// So the header is signed: an HMAC-SHA256, with a key in a root-only file
// that the proxy and the plugin share, over the uid, gid, pid, a time, a
// nonce, the method and the request target. The plugin rejects (denies) a
// request whose header does not verify, is older than MaxAge, or repeats a
// nonce it has seen; a request without the header is anonymous (uid -1).
package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header is the request header the proxy sets, in canonical form (the
// daemon's RequestHeaders keys are canonical: Go's server canonicalises).
const Header = "X-Dockplug-Identity"

// MaxAge is how old (or how far in the future) a header's time may be when
// the plugin judges the request. The proxy and the plugin share a host and
// its clock, and the daemon asks the plugin before it reads the body.
const MaxAge = 2 * time.Minute

// KeySize is the size of a generated key, in bytes.
const KeySize = 32

// Claims is what the proxy vouches for.
type Claims struct {
	UID, GID uint32
	PID      int32
	Time     time.Time // when the proxy forwarded the request (seconds)
	Nonce    string    // 16 random bytes, hex
}

// NewClaims returns claims for a peer, stamped now with a fresh nonce.
func NewClaims(uid, gid uint32, pid int32) (Claims, error) {
	var n [16]byte
	if _, err := rand.Read(n[:]); err != nil {
		return Claims{}, fmt.Errorf("identity nonce: %w", err)
	}
	return Claims{UID: uid, GID: gid, PID: pid, Time: time.Now(), Nonce: hex.EncodeToString(n[:])}, nil
}

// Sign returns the header value for c on a request with method and target
// uri (the request target as the daemon will receive it, which is the
// RequestUri the plugin is shown).
func Sign(key []byte, c Claims, method, uri string) string {
	fields := fmt.Sprintf("v1;uid=%d;gid=%d;pid=%d;t=%d;n=%s", c.UID, c.GID, c.PID, c.Time.Unix(), c.Nonce)
	return fields + ";mac=" + mac(key, fields, method, uri)
}

func mac(key []byte, fields, method, uri string) string {
	h := hmac.New(sha256.New, key)
	// Newlines cannot occur in a method or request target that reached the
	// daemon, nor in fields: the concatenation is unambiguous.
	h.Write([]byte("dockplug-identity\n" + fields + "\n" + method + "\n" + uri))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// Parse checks value's MAC for method and uri and returns its claims. It
// does not check the time or the nonce (Verifier does).
func Parse(key []byte, value, method, uri string) (Claims, error) {
	fields, sum, ok := strings.Cut(value, ";mac=")
	if !ok {
		return Claims{}, errors.New("identity header: no mac")
	}
	if !hmac.Equal([]byte(sum), []byte(mac(key, fields, method, uri))) {
		return Claims{}, errors.New("identity header: bad signature (forged, or signed with another key or for another request)")
	}
	parts := strings.Split(fields, ";")
	if len(parts) != 6 || parts[0] != "v1" {
		return Claims{}, errors.New("identity header: unknown format")
	}
	var c Claims
	var vals [5]string
	for i, name := range []string{"uid", "gid", "pid", "t", "n"} {
		v, ok := strings.CutPrefix(parts[i+1], name+"=")
		if !ok {
			return Claims{}, fmt.Errorf("identity header: want %s", name)
		}
		vals[i] = v
	}
	uid, err1 := strconv.ParseUint(vals[0], 10, 32)
	gid, err2 := strconv.ParseUint(vals[1], 10, 32)
	pid, err3 := strconv.ParseInt(vals[2], 10, 32)
	t, err4 := strconv.ParseInt(vals[3], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Claims{}, fmt.Errorf("identity header: %w", err)
	}
	c.UID, c.GID, c.PID, c.Time, c.Nonce = uint32(uid), uint32(gid), int32(pid), time.Unix(t, 0), vals[4]
	return c, nil
}

// ReadKey reads a key file: hex text (whitespace around it ignored) of at
// least 16 bytes. The file must not be readable by group or others.
func ReadKey(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("identity key %s: mode %v, must not be accessible to group or others (chmod 600)", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("identity key %s: not hex: %w", path, err)
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("identity key %s: %d bytes, want at least 16", path, len(key))
	}
	return key, nil
}

// ReadOrCreateKey reads path, or creates it (mode 0600, KeySize random
// bytes as hex) when it does not exist.
func ReadOrCreateKey(path string) ([]byte, error) {
	key, err := ReadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	buf := make([]byte, KeySize)
	if _, err := rand.Read(buf); err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return ReadKey(path) // created meanwhile by the other side
	}
	if err != nil {
		return nil, fmt.Errorf("create identity key: %w", err)
	}
	_, werr := f.WriteString(hex.EncodeToString(buf) + "\n")
	serr := f.Sync()
	if err := errors.Join(werr, serr, f.Close()); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write identity key %s: %w", path, err)
	}
	return buf, nil
}

// Verifier checks identity headers for the plugin. Its key file is read
// on first use and again while it cannot be read, so a plugin may start
// before the proxy creates the key.
type Verifier struct {
	path string
	// Now is the clock (tests).
	Now func() time.Time

	mu      sync.Mutex
	key     []byte
	keyErr  error
	keyRead time.Time
	seen    map[string]time.Time // nonce -> when it may be forgotten
	pruned  time.Time
}

// NewVerifier verifies with the key in path.
func NewVerifier(path string) *Verifier {
	return &Verifier{path: path, Now: time.Now, seen: map[string]time.Time{}}
}

func (v *Verifier) loadKey(now time.Time) ([]byte, error) {
	if v.key != nil {
		return v.key, nil
	}
	if v.keyErr != nil && now.Sub(v.keyRead) < time.Second {
		return nil, v.keyErr
	}
	v.key, v.keyErr, v.keyRead = nil, nil, now
	key, err := ReadKey(v.path)
	if err != nil {
		v.keyErr = err
		return nil, err
	}
	v.key = key
	return key, nil
}

// Verify checks value for a request. For a request (response false) the
// header must be fresh and its nonce new; for a response (AuthZRes of the
// same request, possibly long after: attach, logs -f) only the signature
// is checked.
func (v *Verifier) Verify(value, method, uri string, response bool) (Claims, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.Now()
	key, err := v.loadKey(now)
	if err != nil {
		return Claims{}, fmt.Errorf("cannot verify the identity header: %w", err)
	}
	if now.Sub(v.pruned) > MaxAge {
		for n, until := range v.seen {
			if now.After(until) {
				delete(v.seen, n)
			}
		}
		v.pruned = now
	}
	c, err := Parse(key, value, method, uri)
	if err != nil || response {
		return c, err
	}
	if d := now.Sub(c.Time); d > MaxAge || d < -MaxAge {
		return Claims{}, fmt.Errorf("identity header: signed at %s, outside %v of now (replayed?)", c.Time.UTC().Format(time.RFC3339), MaxAge)
	}
	if _, dup := v.seen[c.Nonce]; dup {
		return Claims{}, errors.New("identity header: nonce already used (replayed)")
	}
	// A nonce must be remembered as long as its time is acceptable.
	v.seen[c.Nonce] = c.Time.Add(MaxAge + time.Second)
	return c, nil
}
