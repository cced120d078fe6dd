package s3

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// metaDir is the reserved prefix of every bucket a volume uses: the
// volumes' metadata objects live under it, one per volume, so every host
// that reads the bucket sees the same volumes (scope global).
const metaDir = ".dockplug"

// metaVersion is the metadata format; newer formats are refused, not guessed.
const metaVersion = 1

// maxMetaSize bounds what a metadata object may hold.
const maxMetaSize = 64 << 10

// validName is docker's own volume-name rule, which excludes "/" and "..".
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// Meta is a volume's metadata object, .dockplug/volumes/NAME.json in its
// bucket. It is written once, with a conditional create.
type Meta struct {
	Version   int               `json:"version"`
	Name      string            `json:"name"`
	Profile   string            `json:"profile"`
	Bucket    string            `json:"bucket"`
	Prefix    string            `json:"prefix"` // "a/b/" form
	Opts      map[string]string `json:"opts,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
	// Owned: the prefix was empty when the plugin created the volume, so
	// Remove deletes the data. The metadata object is the marker.
	Owned bool   `json:"owned"`
	Host  string `json:"host,omitempty"` // who created it, for operators
}

func metaKey(name string) string { return metaDir + "/volumes/" + name + ".json" }

func checkName(name string) error {
	if !validName.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("invalid volume name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit, no '..'", name)
	}
	return nil
}

// EncodeMeta is the object's bytes.
func EncodeMeta(m *Meta) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return json.MarshalIndent(m, "", "  ")
}

// DecodeMeta parses and checks a metadata object; unknown fields and a
// newer version are errors.
func DecodeMeta(b []byte) (*Meta, error) {
	if len(b) > maxMetaSize {
		return nil, fmt.Errorf("volume metadata: %d bytes, more than %d", len(b), maxMetaSize)
	}
	m := &Meta{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("volume metadata: %w", err)
	}
	if dec.More() {
		return nil, errors.New("volume metadata: trailing data")
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Meta) check() error {
	if m.Version != metaVersion {
		return fmt.Errorf("volume metadata: version %d, this plugin reads %d", m.Version, metaVersion)
	}
	if err := checkName(m.Name); err != nil {
		return fmt.Errorf("volume metadata: %w", err)
	}
	if err := checkBucketName(m.Bucket); err != nil {
		return fmt.Errorf("volume metadata: %w", err)
	}
	if p, err := cleanPrefix(m.Prefix); err != nil || p != m.Prefix || p == "" {
		return fmt.Errorf("volume metadata: bad prefix %q", m.Prefix)
	}
	if m.Profile == "" {
		return errors.New("volume metadata: no profile")
	}
	return nil
}
