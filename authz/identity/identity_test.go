package identity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testKey(t *testing.T) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key")
	key, err := ReadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, key
}

func TestSignVerify(t *testing.T) {
	path, key := testKey(t)
	again, err := ReadOrCreateKey(path)
	if err != nil || string(again) != string(key) {
		t.Fatalf("second ReadOrCreateKey: %x %v, want the first key", again, err)
	}
	v := NewVerifier(path)
	c, err := NewClaims(1000, 100, 42)
	if err != nil {
		t.Fatal(err)
	}
	h := Sign(key, c, "POST", "/v1.47/containers/create")
	got, err := v.Verify(h, "POST", "/v1.47/containers/create", false)
	if err != nil || got.UID != 1000 || got.GID != 100 || got.PID != 42 || got.Nonce != c.Nonce {
		t.Fatalf("Verify: %+v %v", got, err)
	}
	// The response phase of the same request sees the same header.
	if _, err := v.Verify(h, "POST", "/v1.47/containers/create", true); err != nil {
		t.Errorf("response phase: %v", err)
	}
	for _, tc := range []struct{ name, h, method, uri, want string }{
		{"replayed", h, "POST", "/v1.47/containers/create", "nonce already used"},
		{"other target", h, "POST", "/v1.47/containers/x/exec", "bad signature"},
		{"other method", h, "DELETE", "/v1.47/containers/create", "bad signature"},
		{"uid changed", strings.Replace(h, "uid=1000", "uid=0", 1), "POST", "/v1.47/containers/create", "bad signature"},
		{"no mac", "v1;uid=0;gid=0;pid=1;t=1;n=00", "GET", "/info", "no mac"},
		{"other key", Sign([]byte("0123456789abcdef"), c, "GET", "/info"), "GET", "/info", "bad signature"},
	} {
		if _, err := v.Verify(tc.h, tc.method, tc.uri, false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	old := c
	old.Time, old.Nonce = time.Now().Add(-MaxAge-time.Minute), "aa"
	if _, err := v.Verify(Sign(key, old, "GET", "/info"), "GET", "/info", false); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Errorf("stale header: %v", err)
	}
	// Nonces are forgotten once their time is out of range anyway.
	v.Now = func() time.Time { return time.Now().Add(2*MaxAge + time.Minute) }
	v.Verify(h, "GET", "/info", false)
	if len(v.seen) != 0 {
		t.Errorf("%d nonces kept after they expired", len(v.seen))
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	v := NewVerifier(filepath.Join(dir, "key"))
	if _, err := v.Verify("v1;mac=x", "GET", "/", false); err == nil || !strings.Contains(err.Error(), "cannot verify") {
		t.Errorf("missing key: %v", err)
	}
	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, []byte(strings.Repeat("ab", 32)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKey(loose); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("abcd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKey(short); err == nil {
		t.Error("a 2-byte key was accepted")
	}
	// The plugin may start before the proxy creates the key.
	v.keyRead = time.Time{}
	_, key := func() (string, []byte) {
		k, err := ReadOrCreateKey(filepath.Join(dir, "key"))
		if err != nil {
			t.Fatal(err)
		}
		return "", k
	}()
	c, _ := NewClaims(1, 1, 1)
	v.keyRead = time.Time{}
	if _, err := v.Verify(Sign(key, c, "GET", "/"), "GET", "/", false); err != nil {
		t.Errorf("key created after the verifier: %v", err)
	}
}

func TestAccounts(t *testing.T) {
	a := NewAccounts()
	root := a.Lookup(0, 0)
	if root.Name != "root" || len(root.Groups) == 0 || root.Groups[0] != "root" {
		t.Errorf("uid 0: %+v", root)
	}
	none := a.Lookup(4242424, 4242424)
	if none.Name != "" || len(none.Groups) != 1 || none.Groups[0] != "4242424" {
		t.Errorf("unknown uid: %+v", none)
	}
}
