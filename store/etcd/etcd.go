// Package etcd connects dockplug to an etcd cluster, the shared store of
// state that spans hosts (the IPAM plugin's global address space), and
// provides the retry loop its transactions run in.
//
// Dial returns a plain *clientv3.Client, checked to be reachable: a wrong
// endpoint, a cluster without quorum or a TLS mistake is a clear error at
// start rather than a hang on the first request. Do retries an operation
// (typically one read plus one conditional transaction) on the errors that
// mean "etcd did not answer" (no leader, connection lost, request timed
// out), with a bounded wait per attempt and backoff between attempts.
// Whether a failed attempt was applied is unknown to the caller, so the
// operation must be safe to repeat: write conditional transactions that
// recognise their own earlier success (e.g. by a nonce in the value).
package etcd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultDialTimeout bounds Dial's connection and health check.
const DefaultDialTimeout = 5 * time.Second

// ErrUnavailable wraps the last error of an operation that Do gave up on
// because etcd did not answer in time.
var ErrUnavailable = errors.New("etcd unavailable")

type options struct {
	dialTimeout        time.Duration
	certFile, keyFile  string
	caFile             string
	username, password string
	logger             *zap.Logger
	keepAlive          time.Duration
	keepAliveTimeout   time.Duration
	autoSync           time.Duration
}

// Option configures Dial.
type Option func(*options)

// WithDialTimeout bounds the connection and the health check (default 5s).
func WithDialTimeout(d time.Duration) Option { return func(o *options) { o.dialTimeout = d } }

// WithTLS connects over TLS. certFile and keyFile are the client
// certificate for mutual TLS (both empty: none); caFile is the CA that signed
// the servers' certificates (empty: the system roots). Endpoints should then
// use https://.
func WithTLS(certFile, keyFile, caFile string) Option {
	return func(o *options) { o.certFile, o.keyFile, o.caFile = certFile, keyFile, caFile }
}

// WithAuth authenticates with etcd's user/password authentication.
func WithAuth(username, password string) Option {
	return func(o *options) { o.username, o.password = username, password }
}

// WithLogger sets the client's zap logger (default: none; the client is
// noisy at info level about reconnections the caller already handles).
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.logger = l } }

// WithAutoSync refreshes the endpoint list from the cluster's members every
// d (default: never; the endpoints given are used as they are).
func WithAutoSync(d time.Duration) Option { return func(o *options) { o.autoSync = d } }

// Dial connects to the etcd cluster at endpoints ("host:port" or
// "http(s)://host:port") and checks that it answers a read within the dial
// timeout. The caller closes the client.
func Dial(ctx context.Context, endpoints []string, opts ...Option) (*clientv3.Client, error) {
	o := options{dialTimeout: DefaultDialTimeout, keepAlive: 10 * time.Second, keepAliveTimeout: 5 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if len(endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints given")
	}
	cfg := clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          o.dialTimeout,
		DialKeepAliveTime:    o.keepAlive,
		DialKeepAliveTimeout: o.keepAliveTimeout,
		Username:             o.username,
		Password:             o.password,
		AutoSyncInterval:     o.autoSync,
		Logger:               o.logger,
		Context:              context.WithoutCancel(ctx),
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if o.certFile != "" || o.keyFile != "" || o.caFile != "" || hasHTTPS(endpoints) {
		if (o.certFile == "") != (o.keyFile == "") {
			return nil, errors.New("etcd: TLS needs both a certificate and a key file (or neither)")
		}
		info := transport.TLSInfo{CertFile: o.certFile, KeyFile: o.keyFile, TrustedCAFile: o.caFile}
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd: TLS configuration: %w", err)
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: connect to %s: %w", strings.Join(endpoints, ","), err)
	}
	// clientv3.New does not wait for a connection: probe with a cheap
	// linearizable read, which needs a connection and a leader.
	pctx, cancel := context.WithTimeout(ctx, o.dialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, "\x00dockplug-health", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		if errors.Is(err, context.DeadlineExceeded) || IsTransient(err) {
			return nil, fmt.Errorf("etcd: %s unreachable or without quorum after %s: %w (%w)",
				strings.Join(endpoints, ","), o.dialTimeout, ErrUnavailable, err)
		}
		return nil, fmt.Errorf("etcd: %s: %w", strings.Join(endpoints, ","), err)
	}
	return cli, nil
}

func hasHTTPS(endpoints []string) bool {
	for _, e := range endpoints {
		if strings.HasPrefix(e, "https://") || strings.HasPrefix(e, "unixs://") {
			return true
		}
	}
	return false
}

// IsTransient reports whether err means etcd did not (or not yet) answer:
// unavailable, no leader, leader changed, timed out, too many requests. The
// operation may or may not have been applied; repeating it is the caller's
// decision (see Do).
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, rpctypes.ErrTooManyRequests) {
		return true
	}
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code() == codes.Unavailable || ee.Code() == codes.DeadlineExceeded
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
			return true
		}
	}
	return false
}

// Retry configures Do. The zero value uses the defaults.
type Retry struct {
	// Attempt bounds each attempt (default 5s), so a request sent to a
	// member that died is abandoned and tried again.
	Attempt time.Duration
	// Total bounds the whole operation when ctx has no earlier deadline
	// (default 30s).
	Total time.Duration
	// MinBackoff and MaxBackoff bound the jittered, doubling wait between
	// attempts (defaults 20ms and 1s).
	MinBackoff, MaxBackoff time.Duration
}

// Do runs fn until it succeeds, fails with an error that is not transient,
// or ctx (or the total bound) ends; each attempt gets its own deadline. When
// it gives up on transient errors or timeouts the error wraps both
// ErrUnavailable and the last error (e.g. context.DeadlineExceeded).
func Do(ctx context.Context, fn func(ctx context.Context) error) error {
	return Retry{}.Do(ctx, fn)
}

// Do is the package-level Do with r's bounds.
func (r Retry) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	if r.Attempt <= 0 {
		r.Attempt = 5 * time.Second
	}
	if r.Total <= 0 {
		r.Total = 30 * time.Second
	}
	if r.MinBackoff <= 0 {
		r.MinBackoff = 20 * time.Millisecond
	}
	if r.MaxBackoff < r.MinBackoff {
		r.MaxBackoff = max(time.Second, r.MinBackoff)
	}
	ctx, cancel := context.WithTimeout(ctx, r.Total)
	defer cancel()
	start := time.Now()
	wait := r.MinBackoff
	for attempt := 1; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, r.Attempt)
		err := fn(actx)
		acancel()
		if err == nil {
			return nil
		}
		// No answer in time (from this attempt's deadline or the caller's)
		// is etcd not answering, like a transient error.
		if !IsTransient(err) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		d := wait/2 + rand.N(wait/2+1)
		if dl, ok := ctx.Deadline(); ctx.Err() != nil || (ok && time.Until(dl) < d) {
			return fmt.Errorf("%w: gave up after %d attempts in %s: %w", ErrUnavailable, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return fmt.Errorf("%w: gave up after %d attempts in %s: %w", ErrUnavailable, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		wait = min(wait*2, r.MaxBackoff)
	}
}
