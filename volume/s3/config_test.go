package s3

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

const sampleConfig = `profiles:
  default:
    endpoint: https://s3.example.net:9000
    region: us-east-1
    access-key: AKIAEXAMPLE
    secret-key: s3cr3t
  team:
    endpoint: http://127.0.0.1:9999
    access-key: team
    secret-key-file: SECRET
allow-buckets: [media, backups/team-a]
`

func TestLoadConfigRefusesReadableFiles(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		p := writeFile(t, dir, "c.yaml", strings.Replace(sampleConfig, "secret-key-file: SECRET", "secret-key: x", 1), mode)
		_, err := LoadConfig(p)
		if err == nil || !strings.Contains(err.Error(), "0600 or stricter") || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		p := writeFile(t, dir, "c.yaml", strings.Replace(sampleConfig, "secret-key-file: SECRET", "secret-key: x", 1), mode)
		if _, err := LoadConfig(p); err != nil {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}

func TestLoadConfigSecretKeyFile(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", "from-file\n", 0o644)
	p := writeFile(t, dir, "c.yaml", strings.Replace(sampleConfig, "SECRET", secret, 1), 0o600)
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "profile team") {
		t.Fatalf("readable secret-key-file: %v", err)
	}
	os.Chmod(secret, 0o600)
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := c.Profile("team")
	if err != nil || prof.SecretKey != "from-file" {
		t.Fatalf("team profile: %+v, %v", prof, err)
	}
	if def, err := c.Profile(""); err != nil || def.AccessKey != "AKIAEXAMPLE" || def.Name() != "default" {
		t.Fatalf("default profile: %+v, %v", def, err)
	}
	if _, err := c.Profile("nope"); err == nil || !strings.Contains(err.Error(), "team") {
		t.Fatalf("unknown profile: %v", err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for body, want := range map[string]string{
		"profiles: {default: {endpoint: http://x, acces-key: a}}":                      "acces-key",
		"profiles: {default: {region: r}}":                                             "no endpoint",
		"profiles: {default: {endpoint: 's3.example.net'}}":                            "want http(s)://",
		"profiles: {default: {endpoint: http://x, access-key: a}}":                     "go together",
		"profiles: {aws: {endpoint: http://x}}":                                        "reserved",
		"allow-buckets: [Media]":                                                       "lower-case",
		"allow-buckets: [media/../x]":                                                  "component",
		"allow-buckets: [media/.dockplug]":                                             "reserved",
		"profiles: {default: {endpoint: http://x, secret-key: a, secret-key-file: b}}": "exclusive",
		"colour: blue": "colour",
	} {
		if _, err := ParseConfig([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", body, err, want)
		}
	}
	c, err := ParseConfig(nil)
	if err != nil || len(c.Profiles) != 0 {
		t.Fatalf("empty config: %+v, %v", c, err)
	}
}

func TestAllowList(t *testing.T) {
	c, err := ParseConfig([]byte(strings.Replace(sampleConfig, "secret-key-file: SECRET", "secret-key: x", 1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		bucket, prefix string
		ok             bool
	}{
		{"media", "anything/", true},
		{"backups", "team-a/", true},
		{"backups", "team-a/x/", true},
		{"backups", "team-ab/", false},
		{"backups", "team-b/", false},
		{"other", "x/", false},
	} {
		if got := c.Allowed(tc.bucket, tc.prefix); got != tc.ok {
			t.Errorf("Allowed(%s, %s) = %v", tc.bucket, tc.prefix, got)
		}
	}
	if b := c.Buckets(); len(b) != 2 || b[0] != "media" || b[1] != "backups" {
		t.Errorf("Buckets: %v", b)
	}
}

func TestAWSFallbackProfile(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1234")
	t.Setenv("AWS_REGION", "eu-west-3")
	c, _ := ParseConfig([]byte("allow-buckets: [media]"))
	p, err := c.Profile("")
	if err != nil || p.Name() != AWSProfile || p.Endpoint != "http://127.0.0.1:1234" || p.Region != "eu-west-3" {
		t.Fatalf("fallback: %+v, %v", p, err)
	}
	if p2, err := c.Profile(AWSProfile); err != nil || p2.Name() != AWSProfile {
		t.Fatalf("aws profile by name: %+v, %v", p2, err)
	}
}

func TestParseOpts(t *testing.T) {
	o, err := parseOpts("vol", map[string]string{"bucket": "media", "uid": "1000", "mode": "0750", "close": "async", "cache": "5s", "staged-max": "512MiB"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Prefix != "vol/" || o.UID != 1000 || o.Mode != 0o750 || !o.AsyncClose || o.CacheTTL.String() != "5s" || o.StagedMax != 512<<20 {
		t.Fatalf("%+v", o)
	}
	for opts, want := range map[string]map[string]string{
		"unknown option(s) colour": {"bucket": "media", "colour": "blue"},
		"bucket is required":       {},
		"prefix":                   {"bucket": "media", "prefix": "a/../b"},
		"whole bucket":             {"bucket": "media", "prefix": "/"},
		"close":                    {"bucket": "media", "close": "later"},
		"mode":                     {"bucket": "media", "mode": "4755"},
		"uid":                      {"bucket": "media", "uid": "-1"},
		"reserved":                 {"bucket": "media", "prefix": ".dockplug/x"},
		"staged-max":               {"bucket": "media", "staged-max": "12"},
	} {
		if _, err := parseOpts("vol", want); err == nil || !strings.Contains(err.Error(), opts) {
			t.Errorf("%v: %v, want %q", want, err, opts)
		}
	}
}
