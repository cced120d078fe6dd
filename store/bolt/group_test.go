package bolt

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	bbolt "go.etcd.io/bbolt"
)

func TestGroupCommitsConcurrentWritesDurablyAndIsolatesSkips(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	db, err := Open(path, "b")
	if err != nil {
		t.Fatal(err)
	}
	g := NewGroup(db)
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range 200 {
		wg.Go(func() {
			errs[i] = g.Update(func(tx *bbolt.Tx) error {
				if i%10 == 0 {
					return fmt.Errorf("declined %d: %w", i, ErrSkip)
				}
				return tx.Bucket([]byte("b")).Put([]byte(fmt.Sprint(i)), []byte("v"))
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if (i%10 == 0) != errors.Is(err, ErrSkip) || (i%10 != 0 && err != nil) {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	db.Close()
	// Reopen: every acknowledged write is on disk, no skipped one is.
	db, err = Open(path, "b")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		if n := tx.Bucket([]byte("b")).Stats().KeyN; n != 180 {
			t.Errorf("%d keys on disk, want 180", n)
		}
		return nil
	})
	// A hard error fails the whole commit.
	g = NewGroup(db)
	err = g.Update(func(tx *bbolt.Tx) error { return errors.New("boom") })
	if err == nil || err.Error() != "boom" {
		t.Fatalf("hard error: %v", err)
	}
}

func TestGroupSurvivesAPanickingWrite(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "p.db"), "b")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	g := NewGroup(db)
	err = g.Update(func(tx *bbolt.Tx) error { panic("driver bug") })
	if err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("panicking write: %v", err)
	}
	// Later writes are not stuck behind a leader that never finished.
	if err := g.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
}
