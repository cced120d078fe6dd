package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
)

// FuzzCreate calls Create with any name and up to two options (the text
// @ALLOW@ in a value stands for the allowed host directory, which holds a
// directory sub/ and a symlink out -> /etc). Either Create fails with a
// 400 or 409 and leaves no new volume, or the volume's data directory is
// its own under volumes/ or below the allowed directory; and Remove then
// deletes it, leaving host directories alone.
func FuzzCreate(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("chown to any uid needs root")
	}
	for _, s := range [][5]string{
		{"v1", "", "", "", ""},
		{"v1", "uid", "1000", "mode", "0750"},
		{"v1", "mode", "2775", "gid", "4294967295"},
		{"v1", "mode", "17777", "", ""},
		{"v1", "path", "@ALLOW@/sub", "", ""},
		{"v1", "path", "@ALLOW@/out", "", ""},
		{"v1", "path", "@ALLOW@/../", "", ""},
		{"v1", "path", "@ALLOW@/sub", "mode", "0755"},
		{"..", "", "", "", ""},
		{"a/b", "", "", "", ""},
		{"v1", "nope", "1", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	dir, allow := f.TempDir(), f.TempDir()
	if err := os.Mkdir(filepath.Join(allow, "sub"), 0o755); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(allow, "out")); err != nil {
		f.Fatal(err)
	}
	d, err := New(context.Background(), Config{StateDir: dir, AllowedPaths: []string{allow}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { d.Close() })
	state := d.cfg.StateDir // symlinks resolved
	f.Fuzz(func(t *testing.T, name, k1, v1, k2, v2 string) {
		ctx := context.Background()
		var opts map[string]string
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}} {
			if kv[0] == "" {
				continue
			}
			if opts == nil {
				opts = map[string]string{}
			}
			opts[kv[0]] = strings.ReplaceAll(kv[1], "@ALLOW@", allow)
		}
		err := d.Create(ctx, &volume.CreateRequest{Name: name, Opts: opts})
		if err != nil {
			var pe *plugin.Error
			if !errors.As(err, &pe) || (pe.Status != 400 && pe.Status != 409) {
				t.Fatalf("Create(%q, %v): %v, want a 400 or 409", name, opts, err)
			}
			if r, lerr := d.load(name); lerr != nil || r != nil {
				t.Fatalf("Create(%q, %v) failed (%v) but left a record %+v (%v)", name, opts, err, r, lerr)
			}
			if _, serr := os.Lstat(filepath.Join(state, "volumes", name)); checkName(name) == nil && serr == nil {
				t.Fatalf("Create(%q, %v) failed (%v) but left its directory", name, opts, err)
			}
			return
		}
		r, err := d.load(name)
		if err != nil || r == nil {
			t.Fatalf("Create(%q, %v) succeeded but no record: %v", name, opts, err)
		}
		own := filepath.Join(state, "volumes", name, "_data")
		if r.Owned != (r.DataPath == own) || (!r.Owned && !within(allow, r.DataPath)) {
			t.Fatalf("Create(%q, %v): data at %s (owned %v), want %s or below %s", name, opts, r.DataPath, r.Owned, own, allow)
		}
		if st, err := os.Stat(r.DataPath); err != nil || !st.IsDir() {
			t.Fatalf("Create(%q, %v): data dir %s: %v", name, opts, r.DataPath, err)
		}
		if err := d.Remove(ctx, &volume.RemoveRequest{Name: name}); err != nil {
			t.Fatalf("Remove(%q): %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(allow, "sub")); err != nil {
			t.Fatalf("Remove(%q) of a path= volume touched the host directory: %v", name, err)
		}
	})
}
