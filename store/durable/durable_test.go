package durable

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

type syncRec struct {
	name   string
	exists bool // whether the watched path existed at the time
}

// recordSyncs replaces fsync for the test and records each synced name and
// whether watch existed at that moment.
func recordSyncs(t *testing.T, watch string) *[]syncRec {
	t.Helper()
	var mu sync.Mutex
	var recs []syncRec
	old := fsync
	fsync = func(f *os.File) error {
		_, err := os.Lstat(watch)
		mu.Lock()
		recs = append(recs, syncRec{f.Name(), err == nil})
		mu.Unlock()
		return old(f)
	}
	t.Cleanup(func() { fsync = old })
	return &recs
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

func TestCreateFileFreshIsDurable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "host-id")
	recs := recordSyncs(t, path)
	created, err := CreateFile(path, []byte("abc\n"), 0o640)
	if err != nil || !created {
		t.Fatalf("created %v, %v", created, err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "abc\n" {
		t.Fatalf("content %q %v", b, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	if got := entries(t, dir); !slices.Equal(got, []string{"host-id"}) {
		t.Errorf("directory holds %v: a temporary file was left", got)
	}
	// The data is synced before the name appears, then the directory.
	r := *recs
	if len(r) != 2 {
		t.Fatalf("syncs %+v, want the file then its directory", r)
	}
	if !strings.HasPrefix(r[0].name, path+".tmp") || r[0].exists {
		t.Errorf("first sync %+v: want the temporary file, before %s exists", r[0], path)
	}
	if r[1].name != dir || !r[1].exists {
		t.Errorf("second sync %+v: want the directory %s, after the file is linked", r[1], dir)
	}
}

func TestCreateFileKeepsExisting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	created, err := CreateFile(path, []byte("new"), 0o600)
	if err != nil || created {
		t.Fatalf("created %v, %v", created, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("existing file overwritten: %q", b)
	}
	if got := entries(t, dir); !slices.Equal(got, []string{"f"}) {
		t.Errorf("directory holds %v", got)
	}
	if _, err := CreateFile(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Error("created a file in a missing directory")
	}
}

func TestCreateFileConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for i := range 16 {
		wg.Go(func() {
			data := strings.Repeat(string(rune('a'+i)), 4096)
			created, err := CreateFile(path, []byte(data), 0o600)
			if err != nil {
				t.Error(err)
			}
			if created {
				mu.Lock()
				winners = append(winners, data)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d callers created the file", len(winners))
	}
	if b, _ := os.ReadFile(path); string(b) != winners[0] {
		t.Fatal("the file does not hold the winner's data")
	}
	if got := entries(t, dir); !slices.Equal(got, []string{"f"}) {
		t.Errorf("directory holds %v", got)
	}
}

func TestMkdirAllSyncsParents(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "a", "b", "c")
	recs := recordSyncs(t, dir)
	if err := MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("stat %v %v", fi, err)
	}
	var names []string
	for _, r := range *recs {
		names = append(names, r.name)
	}
	want := []string{base, filepath.Join(base, "a"), filepath.Join(base, "a", "b")}
	if !slices.Equal(names, want) {
		t.Fatalf("synced %v, want the parent of each created directory %v", names, want)
	}
	*recs = nil
	if err := MkdirAll(dir+"/", 0o700); err != nil || len(*recs) != 0 {
		t.Fatalf("existing dir: %v, synced %+v", err, *recs)
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	if err := MkdirAll(filepath.Join(file, "x"), 0o700); err == nil {
		t.Error("made a directory under a file")
	}
	if err := MkdirAll(file, 0o700); err == nil {
		t.Error("a file passed for a directory")
	}
}

func TestSyncDirMissing(t *testing.T) {
	if err := SyncDir(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("synced a missing directory")
	}
}
