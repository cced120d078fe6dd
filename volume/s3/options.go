package s3

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/dockplug/dockplug/plugin"
)

// Options the driver accepts with docker volume create -o.
var knownOptions = []string{"bucket", "cache", "close", "delete-data", "gid", "mode", "prefix", "profile", "staged-max", "uid"}

// volOpts are a volume's parsed options.
type volOpts struct {
	Bucket     string
	Prefix     string // "a/b/"
	Profile    string
	UID, GID   uint32
	Mode       fs.FileMode   // of directories; files get it without x bits
	CacheTTL   time.Duration // lifetime of listings and attributes
	AsyncClose bool
	DeleteData bool
	StagedMax  int64 // bytes of closed files waiting for upload (close=async)
}

const defaultCacheTTL = 2 * time.Second

// parseOpts checks every option. name is the volume's name, the default
// prefix.
func parseOpts(name string, opts map[string]string) (*volOpts, error) {
	o := &volOpts{Mode: 0o755, CacheTTL: defaultCacheTTL, Prefix: name}
	var unknown []string
	for k, v := range opts {
		var err error
		switch k {
		case "bucket":
			o.Bucket, err = v, checkBucketName(v)
		case "prefix":
			o.Prefix = v
		case "profile":
			o.Profile = v
			if v == "" {
				err = errors.New("empty")
			}
		case "uid", "gid":
			var n uint64
			n, err = strconv.ParseUint(v, 10, 32)
			if err == nil && n > 1<<31-2 {
				err = errors.New("out of range")
			}
			if k == "uid" {
				o.UID = uint32(n)
			} else {
				o.GID = uint32(n)
			}
		case "mode":
			var n uint64
			n, err = strconv.ParseUint(v, 8, 32)
			if err == nil && n > 0o777 {
				err = errors.New("want 3 octal digits (no setuid/sticky bits)")
			}
			o.Mode = fs.FileMode(n)
		case "cache":
			o.CacheTTL, err = time.ParseDuration(v)
			if err == nil && (o.CacheTTL < 0 || o.CacheTTL > time.Hour) {
				err = errors.New("want a duration between 0s and 1h")
			}
		case "close":
			switch v {
			case "sync":
			case "async":
				o.AsyncClose = true
			default:
				err = errors.New("want sync (close waits for the upload, the default) or async")
			}
		case "delete-data":
			o.DeleteData, err = strconv.ParseBool(v)
		case "staged-max":
			var n uint64
			n, err = humanize.ParseBytes(v)
			if err == nil && (n < 1<<20 || n > 1<<50) {
				err = errors.New("want a size between 1MiB and 1PiB, e.g. 512MiB or 4GiB")
			}
			o.StagedMax = int64(n)
		default:
			unknown = append(unknown, k)
			continue
		}
		if err != nil {
			return nil, plugin.BadRequest("option %s=%q: %v", k, v, err)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, plugin.BadRequest("unknown option(s) %s; known options: %s", strings.Join(unknown, ", "), strings.Join(knownOptions, ", "))
	}
	if o.Bucket == "" {
		return nil, plugin.BadRequest("option bucket is required (-o bucket=NAME)")
	}
	p, err := cleanPrefix(o.Prefix)
	if err != nil {
		return nil, plugin.BadRequest("option prefix: %v", err)
	}
	if p == "" {
		return nil, plugin.BadRequest("option prefix: the whole bucket cannot be a volume; name a prefix")
	}
	o.Prefix = p
	return o, nil
}

func (o *volOpts) String() string {
	return fmt.Sprintf("s3://%s/%s", o.Bucket, o.Prefix)
}
