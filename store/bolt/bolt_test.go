package bolt

import (
	"path/filepath"
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
