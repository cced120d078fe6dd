package driver

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func noRoutes() ([]netip.Prefix, error) { return nil, nil }

// A fresh state dir gets a whole host-id file, which later starts read.
func TestHostIDFresh(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "dockplug-ipam")
	id, err := LoadHostID(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !validHostID(id) {
		t.Fatalf("generated ID %q", id)
	}
	path := filepath.Join(dir, HostIDFile)
	b, err := os.ReadFile(path)
	if err != nil || string(b) != id+"\n" {
		t.Fatalf("host-id file %q %v, want %q", b, err, id+"\n")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("host-id mode %v", fi.Mode())
	}
	des, _ := os.ReadDir(dir)
	if len(des) != 1 {
		t.Errorf("state dir holds %v: a temporary file was left", des)
	}
	if again, err := LoadHostID(dir); err != nil || again != id {
		t.Fatalf("second load %q %v, want %q", again, err, id)
	}
	d, err := New(Config{StateDir: dir, HostRoutes: noRoutes})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.HostID() != id {
		t.Fatalf("driver host ID %q, want %q", d.HostID(), id)
	}
}

// Concurrent first starts on one state dir agree on one ID.
func TestHostIDConcurrentFirstStart(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			id, err := LoadHostID(dir)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		})
	}
	wg.Wait()
	if ids[0] == "" || slices.ContainsFunc(ids, func(s string) bool { return s != ids[0] }) {
		t.Fatalf("IDs %v", ids)
	}
}

// A damaged host-id file refuses the start, names the file and says how to
// fix it, and is left as it is. (It used to become a new host: an empty
// file was replaced by a fresh ID, anything else was used as the ID.)
func TestHostIDDamagedRefusesStart(t *testing.T) {
	for name, content := range map[string]string{
		"empty":      "",
		"newline":    "\n",
		"blank":      "   \n",
		"short":      "0123456789abcdef\n",
		"long":       "0123456789abcdef0123456789abcdef0\n",
		"uppercase":  "0123456789ABCDEF0123456789ABCDEF\n",
		"two lines":  "0123456789abcdef0123456789abcdef\n0123456789abcdef0123456789abcdef\n",
		"padded":     " 0123456789abcdef0123456789abcdef\n",
		"crlf":       "0123456789abcdef0123456789abcdef\r\n",
		"not hex":    "0123456789abcdef0123456789abcdeg\n",
		"zero bytes": "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, HostIDFile)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, load := range []func() error{
				func() error { _, err := LoadHostID(dir); return err },
				func() error {
					d, err := New(Config{StateDir: dir, HostRoutes: noRoutes})
					if err == nil {
						d.Close()
					}
					return err
				},
			} {
				err := load()
				if err == nil {
					t.Fatal("a damaged host-id file was accepted")
				}
				for _, want := range []string{path, "damaged", "--ipam-host-id", "remove the file"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not mention %q", err, want)
					}
				}
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Errorf("damaged file changed to %q", b)
			}
		})
	}
	// Without the final newline, an ID is still whole.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, HostIDFile), []byte("0123456789abcdef0123456789abcdef"), 0o600)
	if id, err := LoadHostID(dir); err != nil || id != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("ID without a newline: %q %v", id, err)
	}
}
