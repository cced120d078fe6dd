package s3

import (
	"reflect"
	"testing"
	"time"
)

func FuzzDecodeMeta(f *testing.F) {
	good, _ := EncodeMeta(&Meta{Version: 1, Name: "vol", Profile: "default", Bucket: "media", Prefix: "vol/", CreatedAt: time.Unix(1700000000, 0).UTC(), Owned: true})
	f.Add(good)
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"name":"a","bucket":"bb","prefix":"../","profile":"x"}`))
	f.Add([]byte(`{}{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		// What decodes re-encodes, and decodes to the same thing.
		out, err := EncodeMeta(m)
		if err != nil {
			t.Fatalf("decoded metadata does not encode: %v", err)
		}
		m2, err := DecodeMeta(out)
		if err != nil {
			t.Fatalf("re-encoded metadata does not decode: %v", err)
		}
		if !reflect.DeepEqual(m.CreatedAt.UTC(), m2.CreatedAt.UTC()) || m.Name != m2.Name || m.Prefix != m2.Prefix {
			t.Fatalf("round trip changed the metadata: %+v vs %+v", m, m2)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("profiles:\n  default:\n    endpoint: http://127.0.0.1:9000\n    access-key: a\n    secret-key: s\nallow-buckets: [media, backups/team-a]\n"))
	f.Add([]byte(""))
	f.Add([]byte("profiles: {aws: {endpoint: http://x}}"))
	f.Add([]byte("allow-buckets: [\"a/../b\"]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		for name, p := range c.Profiles {
			if p.Name() != name || p.Endpoint == "" {
				t.Fatalf("accepted profile %q: %+v", name, p)
			}
		}
		for _, bk := range c.Buckets() {
			if err := checkBucketName(bk); err != nil {
				t.Fatalf("accepted bucket %q: %v", bk, err)
			}
		}
	})
}
