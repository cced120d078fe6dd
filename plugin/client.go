package plugin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// MediaType is the Accept header the daemon sends on every plugin call.
const MediaType = "application/vnd.docker.plugins.v1.2+json"

// unixHost is the Host header the daemon uses for unix and npipe plugins.
const unixHost = "plugin.moby.localhost"

// maxUnixPath is the sun_path limit the daemon enforces.
const maxUnixPath = 108

// TLSOptions is the TLSConfig of a .json spec file, with go-connections'
// JSON keys (the Go field names).
type TLSOptions struct {
	CAFile             string `json:"CAFile,omitempty"`
	CertFile           string `json:"CertFile,omitempty"`
	KeyFile            string `json:"KeyFile,omitempty"`
	InsecureSkipVerify bool   `json:"InsecureSkipVerify,omitempty"`
	ExclusiveRootPools bool   `json:"ExclusiveRootPools,omitempty"`
	MinVersion         uint16 `json:"MinVersion,omitempty"`
}

// Backoff is the daemon's retry schedule for transport errors: sleep Base,
// 2*Base, 4*Base, ... and give up once elapsed time plus the next sleep
// would exceed Limit. With the daemon's values (1 s, 30 s) that is five
// attempts within about 15 s. A zero Limit disables retries.
type Backoff struct {
	Base  time.Duration
	Limit time.Duration
}

// DaemonBackoff is the schedule dockerd uses (pkg/plugins/client.go).
var DaemonBackoff = Backoff{Base: time.Second, Limit: 30 * time.Second}

func (b Backoff) next(retries int) time.Duration {
	d := b.Base
	for ; retries > 0 && d < b.Limit; retries-- {
		d *= 2
	}
	return min(d, b.Limit)
}

// retry runs fn until it returns an error that is not a transport error, or
// the schedule is used up, or ctx ends. onRetry, if set, sees each error
// that is about to be retried.
func (b Backoff) retry(ctx context.Context, onRetry func(error), fn func() error) error {
	start := time.Now()
	for retries := 0; ; retries++ {
		err := fn()
		if err == nil || !IsTransport(err) || b.Limit <= 0 {
			return err
		}
		wait := b.next(retries)
		if time.Since(start)+wait >= b.Limit {
			return err
		}
		if onRetry != nil {
			onRetry(err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// ClientOption configures a Client.
type ClientOption func(*clientConfig)

type clientConfig struct {
	tls     *TLSOptions
	backoff Backoff
	timeout time.Duration
	drained bool
	onRetry func(error) // tests only (export_test.go)
}

// WithTLS sets the TLS options for https addresses.
func WithTLS(o *TLSOptions) ClientOption { return func(c *clientConfig) { c.tls = o } }

// WithBackoff replaces the daemon's retry schedule (tests shorten it;
// Backoff{} disables retries).
func WithBackoff(b Backoff) ClientOption { return func(c *clientConfig) { c.backoff = b } }

// WithTimeout bounds each whole exchange, like a managed plugin's
// `enable --timeout`. Legacy plugins get none from the daemon (the default).
func WithTimeout(d time.Duration) ClientOption { return func(c *clientConfig) { c.timeout = d } }

// WithDrainedRetry makes retries send what the daemon's do. The daemon
// encodes the arguments once into a bytes.Buffer and builds each attempt's
// request from that same buffer, so an attempt that wrote the body drains
// it: a retry after the plugin read the request (and, say, died before
// answering) carries an empty body with Content-Length 0, while a retry
// after a dial failure, which wrote nothing, still carries the whole body.
// Without this option a retry resends the whole body. It is for tests and
// conformance checks: a plugin must answer such an empty body with an
// error and change nothing.
func WithDrainedRetry() ClientOption { return func(c *clientConfig) { c.drained = true } }

// Client calls a plugin the way dockerd does: POST /<Method>, Accept
// v1.2+json, no Content-Type, JSON body or empty body for nil arguments,
// retries on transport errors only. Unless WithDrainedRetry is given, a
// retry resends the whole body where the daemon's may send none.
type Client struct {
	addr    string
	base    string // scheme://host, no path (the daemon drops any path)
	host    string // Host header override
	http    *http.Client
	backoff Backoff
	drained bool
	onRetry func(error)
}

// NewClient returns a client for addr: unix:///path, tcp://host:port,
// http://host:port or https://host:port.
func NewClient(addr string, opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{backoff: DaemonBackoff}
	for _, o := range opts {
		o(&cfg)
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("plugin address %q: %w", addr, err)
	}
	tr := &http.Transport{
		MaxIdleConns:    6,
		IdleConnTimeout: 30 * time.Second,
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	c := &Client{addr: addr, backoff: cfg.backoff, drained: cfg.drained, onRetry: cfg.onRetry}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if u.Host != "" { // unix://relative/path
			path = u.Host + u.Path
		}
		if len(path) >= maxUnixPath {
			return nil, fmt.Errorf("unix socket path %q is too long", path)
		}
		tr.DisableCompression = true
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", path)
		}
		c.base, c.host = "http://"+unixHost, unixHost
	case "tcp", "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("plugin address %q has no host", addr)
		}
		tr.Proxy = http.ProxyFromEnvironment
		tr.DialContext = dialer.DialContext
		scheme := "http"
		if u.Scheme == "https" {
			scheme = "https"
			tc, err := clientTLS(cfg.tls)
			if err != nil {
				return nil, fmt.Errorf("plugin address %q: %w", addr, err)
			}
			tr.TLSClientConfig = tc
		}
		c.base = scheme + "://" + u.Host
	default:
		return nil, fmt.Errorf("plugin address %q: unsupported protocol %q", addr, u.Scheme)
	}
	c.http = &http.Client{Transport: tr, Timeout: cfg.timeout}
	return c, nil
}

func clientTLS(o *TLSOptions) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o == nil {
		return tc, nil
	}
	if o.MinVersion != 0 {
		tc.MinVersion = o.MinVersion
	}
	tc.InsecureSkipVerify = o.InsecureSkipVerify
	if o.CAFile != "" {
		pool := x509.NewCertPool()
		if !o.ExclusiveRootPools {
			if sys, err := x509.SystemCertPool(); err == nil {
				pool = sys
			}
		}
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", o.CAFile)
		}
		tc.RootCAs = pool
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Addr is the address the client talks to.
func (c *Client) Addr() string { return c.addr }

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Call sends method (e.g. "VolumeDriver.Get") with args (nil: empty body)
// and decodes a 200 answer into ret (nil: the body is not read, as in the
// daemon). A non-200 answer is a *StatusError. Only a failure to get the
// answer's headers is retried (see CallRaw).
func (c *Client) Call(ctx context.Context, method string, args, ret any) error {
	if ret == nil {
		resp, err := c.post(ctx, method, args)
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	body, err := c.CallRaw(ctx, method, args)
	if err != nil {
		return err
	}
	return DecodeResponse(method, body, ret)
}

// DecodeResponse decodes a 200 answer the way the daemon does: case-
// insensitive keys, unknown keys ignored, an empty body is an error (G19).
func DecodeResponse(method string, body []byte, ret any) error {
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(ret); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: empty response body", method)
		}
		return fmt.Errorf("%s: decode response: %w", method, err)
	}
	return nil
}

// CallRaw is Call without decoding: it returns the body of a 200 answer.
//
// As in the daemon (pkg/plugins client.go callWithRetry), a call is
// retried on the Backoff schedule only when no answer's headers arrived:
// dial errors, write errors, a connection closed before the status line.
// A non-200 answer is never retried, and neither is a failure while reading
// the body once the headers arrived: the plugin may have executed the call.
// Like the daemon's decoder, which stops reading at the end of the first
// JSON value, a body that breaks off after a complete value is an answer.
func (c *Client) CallRaw(ctx context.Context, method string, args any) ([]byte, error) {
	resp, err := c.post(ctx, method, args)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !holdsValue(body, err) {
		return nil, fmt.Errorf("%s: read response: %w", method, err)
	}
	return body, nil
}

// holdsValue reports whether a json.Decoder reading body and then getting
// err decodes a value, as the daemon's decoder on the broken stream would.
func holdsValue(body []byte, err error) bool {
	var v json.RawMessage
	r := io.MultiReader(bytes.NewReader(body), errReader{err})
	return json.NewDecoder(r).Decode(&v) == nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// post sends the call, retrying transport errors, and returns a 200
// answer with its body unread; any other status is a *StatusError.
func (c *Client) post(ctx context.Context, method string, args any) (*http.Response, error) {
	var buf bytes.Buffer
	if args != nil {
		if err := json.NewEncoder(&buf).Encode(args); err != nil {
			return nil, fmt.Errorf("%s: encode request: %w", method, err)
		}
	}
	payload := buf.Bytes()
	var resp *http.Response
	err := c.backoff.retry(ctx, c.onRetry, func() error {
		// The daemon's request reads the shared buffer itself, which
		// http.NewRequest sizes (Content-Length) from what is left in it.
		var body io.Reader = &buf
		if !c.drained {
			body = bytes.NewReader(payload)
		}
		var err error
		resp, err = c.once(ctx, method, body)
		return err
	})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil { // the daemon's text for it: the read error's
			return nil, &StatusError{Status: resp.StatusCode, Method: method, Msg: err.Error()}
		}
		return nil, &StatusError{Status: resp.StatusCode, Method: method, Msg: errorText(body)}
	}
	return resp, nil
}

// once is one attempt: the daemon's http.Client.Do. Its errors, and only
// its errors, are transport errors.
func (c *Client) once(ctx context.Context, method string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/"+method, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	req.Header.Set("Accept", MediaType)
	if c.host != "" {
		req.Host = c.host
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		return nil, &transportError{fmt.Errorf("%s: %w", method, err)}
	}
	return resp, nil
}

// errorText is the daemon's rule: the "Err" string of a JSON body, else the
// raw body exactly as sent (whitespace and trailing newline included).
func errorText(body []byte) string {
	var e struct{ Err string }
	if json.Unmarshal(body, &e) == nil && e.Err != "" {
		return e.Err
	}
	return string(body)
}

// Manifest is the answer to Plugin.Activate.
type Manifest struct {
	Implements []string
}

// Activate performs the handshake.
func (c *Client) Activate(ctx context.Context) (*Manifest, error) {
	var m Manifest
	if err := c.Call(ctx, "Plugin.Activate", nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Has reports whether the manifest lists kind, compared exactly and
// case-sensitively as the daemon does (G20).
func (m *Manifest) Has(kind string) bool {
	for _, k := range m.Implements {
		if k == kind {
			return true
		}
	}
	return false
}
