package bolt

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"
)

func TestOpenCreatesBucketsAndRefusesASecondOpener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	db, err := Open(path, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		if tx.Bucket([]byte("a")) == nil || tx.Bucket([]byte("b")) == nil {
			t.Error("buckets missing")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "is locked") {
		t.Fatalf("second open: %v", err)
	}
}

// A new state file's name is fsync'd with its directory: otherwise power
// loss could take the whole file, and the commits fsync'd into it, away.
func TestOpenSyncsTheDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	var synced []string
	old := syncDir
	syncDir = func(dir string) error {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("directory synced before the state file exists: %v", err)
		}
		synced = append(synced, dir)
		return old(dir)
	}
	t.Cleanup(func() { syncDir = old })
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if !slices.Equal(synced, []string{filepath.Dir(path)}) {
		t.Fatalf("synced %v, want %s", synced, filepath.Dir(path))
	}
}
