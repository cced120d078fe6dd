// Package bolt opens the embedded bbolt state file a plugin keeps its state
// in. Every Update is fsync'd before it returns, so state a plugin
// acknowledged to the daemon survives kill -9 and power loss.
package bolt

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/dockplug/dockplug/store/durable"
)

// syncDir makes the state file's name durable; tests replace it.
var syncDir = durable.SyncDir

// Open opens (creating if needed) the bbolt file at path and the given
// top-level buckets. A file locked by another process is an error after a
// second, not a hang: two plugins must never share one state file. The
// directories created and the file's name are fsync'd, so that a new state
// file does not vanish on power loss with the commits fsync'd into it.
func Open(path string, buckets ...string) (*bbolt.DB, error) {
	dir := filepath.Dir(path)
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("state file %s is locked: is another dockplug serving the same state dir?", path)
		}
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		db.Close()
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return fmt.Errorf("bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return db, nil
}
