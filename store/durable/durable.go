// Package durable creates small state files and directories so that they
// survive power loss: a file's data is fsync'd before its name appears,
// and the directory holding a new name is fsync'd before the call returns.
// A file created here is, after a crash, either absent or whole; never
// empty or half-written.
package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// fsync syncs a file or directory; tests replace it to see what is synced.
var fsync = func(f *os.File) error { return f.Sync() }

// SyncDir fsyncs the directory dir, so that the names created, renamed or
// removed in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	err = fsync(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// MkdirAll is os.MkdirAll, except that each directory it creates is made
// durable by syncing its parent.
func MkdirAll(dir string, perm fs.FileMode) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: errors.New("not a directory")}
		}
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := MkdirAll(parent, perm); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, perm); err != nil {
		// Another process created it meanwhile: sync its name all the same.
		if fi, serr := os.Stat(dir); serr != nil || !fi.IsDir() {
			return err
		}
	}
	return SyncDir(parent)
}

// CreateFile creates the file path holding data, unless path exists: then
// it changes nothing and returns false. The data is written to a temporary
// file in the same directory and fsync'd, then linked to path (which fails
// if path exists, so of concurrent callers exactly one creates it), and
// the directory is fsync'd. The directory must exist.
func CreateFile(path string, data []byte, perm fs.FileMode) (created bool, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("create %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = fsync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("create %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("create %s: %w", path, err)
	}
	// Remove the temporary name before syncing, so that the same sync
	// makes the removal durable too.
	if err := os.Remove(tmp); err == nil {
		tmp = ""
	}
	if err := SyncDir(dir); err != nil {
		return true, fmt.Errorf("create %s: %w", path, err)
	}
	return true, nil
}
