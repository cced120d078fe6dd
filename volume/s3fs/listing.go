package s3fs

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

// entry is what a listing knows of one name.
type entry struct {
	dir   bool
	size  int64
	mtime time.Time
	// local: made here and not yet in S3 (a file being written, or an
	// upload in flight); kept across refreshes until uploaded or removed.
	local bool
}

// listing is one directory's cached listing. Its mutex is held across the
// refresh, so concurrent lookups in one directory share one listing.
type listing struct {
	mu      sync.Mutex
	at      time.Time
	valid   bool
	entries map[string]entry
}

func (f *FS) listingOf(dirPath string) *listing {
	f.lmu.Lock()
	defer f.lmu.Unlock()
	l := f.listings[dirPath]
	if l == nil {
		l = &listing{entries: map[string]entry{}}
		f.listings[dirPath] = l
	}
	return l
}

// fresh refreshes l if needed; l.mu must be held.
func (f *FS) fresh(ctx context.Context, dirPath string, l *listing) error {
	if l.valid && time.Since(l.at) < f.o.CacheTTL {
		return nil
	}
	got, err := f.listS3(ctx, f.dirKey(dirPath))
	if err != nil {
		return err
	}
	for name, e := range l.entries {
		if _, ok := got[name]; !ok && e.local {
			got[name] = e
		}
	}
	l.entries, l.at, l.valid = got, time.Now(), true
	return nil
}

// listS3 lists one level under prefix, every page of it.
func (f *FS) listS3(ctx context.Context, prefix string) (map[string]entry, error) {
	out := map[string]entry{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for o := range f.o.Client.ListObjects(ctx, f.o.Bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if o.Err != nil {
			return nil, o.Err
		}
		name := strings.TrimPrefix(o.Key, prefix)
		if isDir := strings.HasSuffix(name, "/"); isDir {
			name = strings.TrimSuffix(name, "/")
			if name == "" || strings.Contains(name, "/") {
				continue
			}
			out[name] = entry{dir: true, mtime: o.LastModified}
			continue
		}
		if name == "" || strings.Contains(name, "/") {
			continue // the directory's own marker
		}
		if prev, ok := out[name]; ok && prev.dir {
			f.log.Warn("object hidden by a directory of the same name", "key", o.Key)
			continue
		}
		out[name] = entry{size: o.Size, mtime: o.LastModified}
	}
	if prefix == "" {
		delete(out, ".dockplug") // a whole bucket: never show the plugin's reserved prefix
	}
	return out, nil
}

// lookup answers one name of a directory from its (cached) listing.
func (f *FS) lookup(ctx context.Context, dirPath, name string) (entry, bool, error) {
	l := f.listingOf(dirPath)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := f.fresh(ctx, dirPath, l); err != nil {
		return entry{}, false, err
	}
	e, ok := l.entries[name]
	return e, ok, nil
}

// names is a sorted snapshot of a directory's listing.
func (f *FS) names(ctx context.Context, dirPath string) ([]string, map[string]entry, error) {
	l := f.listingOf(dirPath)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := f.fresh(ctx, dirPath, l); err != nil {
		return nil, nil, err
	}
	snap := make(map[string]entry, len(l.entries))
	names := make([]string, 0, len(l.entries))
	for n, e := range l.entries {
		snap[n] = e
		names = append(names, n)
	}
	sort.Strings(names)
	return names, snap, nil
}

// setEntry records a local change in a directory's listing (nil removes).
// A listing that is not valid is left alone: its next refresh sees S3,
// except for local entries, which are recorded anyway.
func (f *FS) setEntry(dirPath, name string, e *entry) {
	l := f.listingOf(dirPath)
	l.mu.Lock()
	defer l.mu.Unlock()
	if e == nil {
		delete(l.entries, name)
		return
	}
	if l.valid || e.local {
		l.entries[name] = *e
	}
}

// invalidate drops a directory's listing (its local entries stay).
func (f *FS) invalidate(dirPath string) {
	l := f.listingOf(dirPath)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.valid = false
}
