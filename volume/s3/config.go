package s3

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"gopkg.in/yaml.v3"
)

// DefaultProfile is the profile a volume without -o profile= uses.
const DefaultProfile = "default"

// AWSProfile is the fallback profile built from the standard AWS
// environment variables and shared credentials file. It also serves as
// "default" when the file defines no default profile.
const AWSProfile = "aws"

// Config is the plugin-level configuration file (--s3-config). It holds
// credentials, so it must be mode 0600 or stricter.
type Config struct {
	Profiles     map[string]*Profile `yaml:"profiles"`
	AllowBuckets []string            `yaml:"allow-buckets"`

	// Path is the file the config was loaded from (mount processes reload it).
	Path string `yaml:"-"`
}

// Profile is one S3 endpoint with its credentials.
type Profile struct {
	Endpoint      string `yaml:"endpoint"`
	Region        string `yaml:"region"`
	AccessKey     string `yaml:"access-key"`
	SecretKey     string `yaml:"secret-key"`
	SecretKeyFile string `yaml:"secret-key-file"`
	SessionToken  string `yaml:"session-token"`
	CAFile        string `yaml:"ca-file"`

	name string
	aws  bool // the environment/shared-file fallback
}

// Name is the profile's name in the file ("aws" for the fallback).
func (p *Profile) Name() string { return p.name }

// LoadConfig reads and checks the file at path. It refuses a file that
// group or others may read or write, and a secret-key-file likewise.
func LoadConfig(path string) (*Config, error) {
	if err := checkPrivate(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("s3 config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("s3 config %s: %w", path, err)
	}
	c.Path = path
	for _, p := range c.Profiles {
		if p.SecretKeyFile == "" {
			continue
		}
		if err := checkPrivate(p.SecretKeyFile); err != nil {
			return nil, fmt.Errorf("s3 config %s: profile %s: %w", path, p.name, err)
		}
		s, err := os.ReadFile(p.SecretKeyFile)
		if err != nil {
			return nil, fmt.Errorf("s3 config %s: profile %s: %w", path, p.name, err)
		}
		p.SecretKey = strings.TrimSpace(string(s))
	}
	return c, nil
}

func checkPrivate(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("s3 config: %w", err)
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("s3 config: %s is mode %04o, but it holds credentials: it must be 0600 or stricter (chmod 600 %s)", path, m, path)
	}
	return nil
}

// ParseConfig decodes and validates a config file's contents. Unknown keys
// are errors: a typo must not silently drop a setting.
func ParseConfig(b []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty document (io.EOF) is an empty config: the AWS fallback
	// alone, nothing allowed.
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if c.Profiles == nil {
		c.Profiles = map[string]*Profile{}
	}
	for name, p := range c.Profiles {
		if p == nil {
			return nil, fmt.Errorf("profile %q is empty", name)
		}
		if name == "" || name == AWSProfile {
			return nil, fmt.Errorf("profile name %q is reserved", name)
		}
		p.name = name
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("profile %s: %w", name, err)
		}
	}
	for i, a := range c.AllowBuckets {
		bucket, prefix, _ := strings.Cut(a, "/")
		if err := checkBucketName(bucket); err != nil {
			return nil, fmt.Errorf("allow-buckets[%d] %q: %w", i, a, err)
		}
		if prefix != "" {
			if _, err := cleanPrefix(prefix); err != nil {
				return nil, fmt.Errorf("allow-buckets[%d] %q: %w", i, a, err)
			}
		}
	}
	return c, nil
}

func (p *Profile) validate() error {
	if p.Endpoint == "" {
		return errors.New("no endpoint")
	}
	u, err := url.Parse(p.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("endpoint %q: want http(s)://HOST[:PORT]", p.Endpoint)
	}
	if p.SecretKey != "" && p.SecretKeyFile != "" {
		return errors.New("secret-key and secret-key-file are exclusive")
	}
	if (p.AccessKey == "") != (p.SecretKey == "" && p.SecretKeyFile == "") {
		return errors.New("access-key and secret-key (or secret-key-file) go together")
	}
	return nil
}

// Profile returns the named profile; "" is DefaultProfile. Without a
// "default" in the file, the default is the AWS fallback.
func (c *Config) Profile(name string) (*Profile, error) {
	if name == "" {
		name = DefaultProfile
	}
	if p, ok := c.Profiles[name]; ok {
		return p, nil
	}
	if name == AWSProfile || name == DefaultProfile {
		return awsProfile(), nil
	}
	return nil, fmt.Errorf("no S3 profile %q in %s (profiles: %s)", name, c.Path, strings.Join(c.profileNames(), ", "))
}

func (c *Config) profileNames() []string {
	out := []string{AWSProfile}
	for n := range c.Profiles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Allowed reports whether volumes may use prefix (cleaned, "" or ending in
// "/") of bucket.
func (c *Config) Allowed(bucket, prefix string) bool {
	for _, a := range c.AllowBuckets {
		b, p, _ := strings.Cut(a, "/")
		if b != bucket {
			continue
		}
		if p == "" {
			return true
		}
		p = strings.Trim(p, "/") + "/"
		if strings.HasPrefix(prefix, p) {
			return true
		}
	}
	return false
}

// Buckets are the buckets named in the allow-list, each once.
func (c *Config) Buckets() []string {
	seen := map[string]bool{}
	var out []string
	for _, a := range c.AllowBuckets {
		b, _, _ := strings.Cut(a, "/")
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out
}

// awsProfile is built from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL,
// AWS_REGION / AWS_DEFAULT_REGION, and the credentials of the environment
// (AWS_ACCESS_KEY_ID, ...) or the shared file (AWS_SHARED_CREDENTIALS_FILE
// or ~/.aws/credentials, profile AWS_PROFILE).
func awsProfile() *Profile {
	region := firstEnv("AWS_REGION", "AWS_DEFAULT_REGION")
	if region == "" {
		region = "us-east-1"
	}
	ep := firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	if ep == "" {
		ep = "https://s3." + region + ".amazonaws.com"
	}
	return &Profile{Endpoint: ep, Region: region, name: AWSProfile, aws: true}
}

func firstEnv(keys ...string) string {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

func (p *Profile) creds() *credentials.Credentials {
	if !p.aws {
		if p.AccessKey == "" {
			return credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
		}
		return credentials.NewStaticV4(p.AccessKey, p.SecretKey, p.SessionToken)
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{Profile: os.Getenv("AWS_PROFILE")},
	})
}

// Client connects to the profile's endpoint (no request is made yet).
func (p *Profile) Client() (*minio.Client, error) {
	u, err := url.Parse(p.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("profile %s: endpoint: %w", p.name, err)
	}
	tr, err := minio.DefaultTransport(u.Scheme == "https")
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.name, err)
	}
	tr.MaxIdleConnsPerHost = 64
	if p.CAFile != "" {
		pem, err := os.ReadFile(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("profile %s: ca-file: %w", p.name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("profile %s: ca-file %s holds no PEM certificate", p.name, p.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:     p.creds(),
		Secure:    u.Scheme == "https",
		Region:    p.Region,
		Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.name, err)
	}
	return c, nil
}

// checkBucketName applies S3's bucket naming rules (3-63 characters,
// lower-case letters, digits, '.', '-').
func checkBucketName(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return errors.New("bucket names have 3 to 63 characters")
	}
	for i, r := range b {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (r == '.' || r == '-') && i > 0 && i < len(b)-1
		if !ok {
			return fmt.Errorf("bucket name %q: only lower-case letters, digits, '.' and '-' (not first or last)", b)
		}
	}
	return nil
}

// cleanPrefix turns a user's prefix into "" or "a/b/" form, refusing
// "..", empty components and the reserved prefix.
func cleanPrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return "", fmt.Errorf("prefix %q: empty, '.' or '..' component", p)
		}
	}
	if path.Clean(p) != p || strings.ContainsAny(p, "\x00\\") {
		return "", fmt.Errorf("prefix %q is not a clean path", p)
	}
	if p == metaDir || strings.HasPrefix(p+"/", metaDir+"/") {
		return "", fmt.Errorf("prefix %q is reserved for volume metadata", p)
	}
	return p + "/", nil
}

// pingBucket checks endpoint, credentials and bucket with one request,
// turning S3's answers into errors an operator can act on.
func pingBucket(ctx context.Context, c *minio.Client, p *Profile, bucket string) error {
	ok, err := c.BucketExists(ctx, bucket)
	if err != nil {
		return describe(err, p, bucket)
	}
	if !ok {
		return fmt.Errorf("bucket %s does not exist at %s (profile %s)", bucket, p.Endpoint, p.name)
	}
	return nil
}

// describe turns an S3 error into one that says what to fix.
func describe(err error, p *Profile, bucket string) error {
	r := minio.ToErrorResponse(err)
	switch r.Code {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken":
		return fmt.Errorf("S3 at %s refused profile %s's credentials for bucket %s: %s (%s)", p.Endpoint, p.name, bucket, r.Code, r.Message)
	case "NoSuchBucket":
		return fmt.Errorf("bucket %s does not exist at %s (profile %s)", bucket, p.Endpoint, p.name)
	}
	if r.StatusCode == http.StatusForbidden {
		return fmt.Errorf("S3 at %s refused profile %s's credentials for bucket %s (403)", p.Endpoint, p.name, bucket)
	}
	return fmt.Errorf("S3 at %s (profile %s), bucket %s: %w", p.Endpoint, p.name, bucket, err)
}
