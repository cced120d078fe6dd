package s3

import (
	"bytes"
	"context"

	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	bbolt "go.etcd.io/bbolt"

	"github.com/dockplug/dockplug/plugin"
)

var errExists = errors.New("already exists")

func isNoSuchKey(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "NoSuchKey" || r.StatusCode == http.StatusNotFound && r.Code != "NoSuchBucket"
}

// readMeta reads bucket's metadata object of name; nil, nil if absent.
func readMeta(ctx context.Context, cli *minio.Client, bucket, name string) (*Meta, error) {
	o, err := cli.GetObject(ctx, bucket, metaKey(name), minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	b, err := io.ReadAll(io.LimitReader(o, maxMetaSize+1))
	if err != nil {
		if isNoSuchKey(err) {
			return nil, nil
		}
		return nil, err
	}
	m, err := DecodeMeta(b)
	if err != nil {
		return nil, fmt.Errorf("s3://%s/%s: %w", bucket, metaKey(name), err)
	}
	if m.Name != name || m.Bucket != bucket {
		return nil, fmt.Errorf("s3://%s/%s names volume %s in bucket %s", bucket, metaKey(name), m.Name, m.Bucket)
	}
	return m, nil
}

// writeMetaOnce creates the metadata object only if it does not exist
// (If-None-Match: *); errExists if it does.
func writeMetaOnce(ctx context.Context, cli *minio.Client, m *Meta) error {
	b, err := EncodeMeta(m)
	if err != nil {
		return err
	}
	opts := minio.PutObjectOptions{ContentType: "application/json"}
	opts.SetMatchETagExcept("*")
	_, err = cli.PutObject(ctx, m.Bucket, metaKey(m.Name), bytes.NewReader(b), int64(len(b)), opts)
	if r := minio.ToErrorResponse(err); r.StatusCode == http.StatusPreconditionFailed || r.Code == "PreconditionFailed" || r.StatusCode == http.StatusConflict {
		return errExists
	}
	return err
}

// prefixEmpty reports whether no object exists under prefix.
func prefixEmpty(ctx context.Context, cli *minio.Client, bucket, prefix string) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o, ok := <-cli.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, MaxKeys: 1})
	if ok && o.Err != nil {
		return false, o.Err
	}
	return !ok, nil
}

// deletePrefix deletes every object under prefix.
func deletePrefix(ctx context.Context, cli *minio.Client, bucket, prefix string) error {
	keys := make(chan minio.ObjectInfo)
	var listErr error
	go func() {
		defer close(keys)
		for o := range cli.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if o.Err != nil {
				listErr = o.Err
				return
			}
			select {
			case keys <- o:
			case <-ctx.Done():
				return
			}
		}
	}()
	var errs []error
	for e := range cli.RemoveObjects(ctx, bucket, keys, minio.RemoveObjectsOptions{}) {
		errs = append(errs, fmt.Errorf("%s: %w", e.ObjectName, e.Err))
	}
	if listErr != nil {
		errs = append(errs, listErr)
	}
	return errors.Join(errs...)
}

// cached is this host's copy of name's metadata, nil if none.
func (d *Driver) cached(name string) (*Meta, error) {
	var m *Meta
	err := d.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket([]byte(cacheBucket)).Get([]byte(name))
		if v == nil {
			return nil
		}
		var err error
		m, err = DecodeMeta(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read cached volume %s: %w", name, err)
	}
	return m, nil
}

func (d *Driver) cache(m *Meta) error {
	b, err := EncodeMeta(m)
	if err != nil {
		return err
	}
	err = d.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte(cacheBucket)).Put([]byte(m.Name), b) })
	if err != nil {
		return fmt.Errorf("cache volume %s: %w", m.Name, err)
	}
	return nil
}

func (d *Driver) uncache(name string) error {
	err := d.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte(cacheBucket)).Delete([]byte(name)) })
	if err != nil {
		return fmt.Errorf("forget volume %s: %w", name, err)
	}
	return os.RemoveAll(filepath.Join(d.cfg.StateDir, "cache", name))
}

// place is one (profile, bucket) pair volumes may live in.
type place struct {
	prof   *Profile
	bucket string
}

// places are every profile of the file (and the AWS fallback when the
// environment configures it) times every allowed bucket.
func (d *Driver) places() []place {
	c := d.cfg.Config
	var profs []*Profile
	names := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		profs = append(profs, c.Profiles[n])
	}
	if awsConfigured() {
		profs = append(profs, awsProfile())
	}
	var out []place
	for _, p := range profs {
		for _, b := range c.Buckets() {
			out = append(out, place{p, b})
		}
	}
	return out
}

// awsConfigured: the fallback is scanned by Get and List only when the
// environment points at it, never by guess (that would call AWS).
func awsConfigured() bool {
	return firstEnv("AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_SHARED_CREDENTIALS_FILE") != ""
}

// find returns name's metadata and a client for its endpoint. It answers
// plugin.NotFound only when S3 says the volume is not there; when S3
// cannot be reached, this host's cached copy answers.
func (d *Driver) find(ctx context.Context, name string) (*Meta, *minio.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, s3Timeout)
	defer cancel()
	c, err := d.cached(name)
	if err != nil {
		return nil, nil, err
	}
	if c != nil {
		prof, err := d.cfg.Config.Profile(c.Profile)
		if err != nil {
			return nil, nil, fmt.Errorf("volume %s: %w", name, err)
		}
		cli, err := d.client(prof)
		if err != nil {
			return nil, nil, err
		}
		m, err := readMeta(ctx, cli, c.Bucket, name)
		switch {
		case err != nil:
			d.log.Warn("S3 unreachable: answering from the cached metadata", "volume", name, "err", err)
			return c, cli, nil
		case m == nil:
			if n, _ := d.mounts.Count(name); n > 0 {
				// Removed elsewhere while mounted here: keep answering,
				// the daemon must be able to unmount it.
				return c, cli, nil
			}
			if err := d.uncache(name); err != nil {
				return nil, nil, err
			}
			return nil, nil, plugin.NotFound("no such volume: %s (removed from s3://%s)", name, c.Bucket)
		}
		return m, cli, nil
	}
	var errs []string
	for _, pl := range d.places() {
		cli, err := d.client(pl.prof)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		m, err := readMeta(ctx, cli, pl.bucket, name)
		if err != nil {
			if r := minio.ToErrorResponse(err); r.Code != "NoSuchBucket" {
				errs = append(errs, describe(err, pl.prof, pl.bucket).Error())
			}
			continue
		}
		if m != nil && m.Profile == pl.prof.name {
			if err := d.cache(m); err != nil {
				return nil, nil, err
			}
			return m, cli, nil
		}
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("volume %s: not found where S3 answered, and S3 failed elsewhere: %s", name, strings.Join(errs, "; "))
	}
	return nil, nil, plugin.NotFound("no such volume: %s", name)
}

// listAll lists the metadata objects of every place, with this host's
// cached copies standing in for places S3 does not answer for.
func (d *Driver) listAll(ctx context.Context) ([]*Meta, error) {
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	byName := map[string]*Meta{}
	failed := map[place]bool{}
	for _, pl := range d.places() {
		cli, err := d.client(pl.prof)
		if err != nil {
			return nil, err
		}
		ms, err := listPlace(ctx, cli, pl)
		if err != nil {
			if minio.ToErrorResponse(err).Code != "NoSuchBucket" {
				d.log.Warn("listing volumes", "bucket", pl.bucket, "profile", pl.prof.name, "err", err)
				failed[place{bucket: pl.bucket}] = true
			}
			continue
		}
		for _, m := range ms {
			if _, dup := byName[m.Name]; !dup {
				byName[m.Name] = m
			}
		}
	}
	var cachedAll []*Meta
	err := d.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(cacheBucket)).ForEach(func(k, v []byte) error {
			m, err := DecodeMeta(v)
			if err != nil {
				return fmt.Errorf("cached volume %s: %w", k, err)
			}
			cachedAll = append(cachedAll, m)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for _, m := range cachedAll {
		if _, ok := byName[m.Name]; !ok && failed[place{bucket: m.Bucket}] {
			byName[m.Name] = m
		}
	}
	out := make([]*Meta, 0, len(byName))
	for _, m := range byName {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func listPlace(ctx context.Context, cli *minio.Client, pl place) ([]*Meta, error) {
	var out []*Meta
	for o := range cli.ListObjects(ctx, pl.bucket, minio.ListObjectsOptions{Prefix: metaDir + "/volumes/"}) {
		if o.Err != nil {
			return nil, o.Err
		}
		name, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, metaDir+"/volumes/"), ".json")
		if !ok || checkName(name) != nil {
			continue
		}
		m, err := readMeta(ctx, cli, pl.bucket, name)
		if err != nil {
			return nil, err
		}
		if m != nil && m.Profile == pl.prof.name {
			out = append(out, m)
		}
	}
	return out, nil
}
