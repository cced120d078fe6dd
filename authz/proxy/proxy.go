// Package proxy is dockplug's identity proxy: a unix socket in front of
// the Docker daemon's that tells dockplug-authz who is calling.
//
// For each connection it reads the caller's uid, gid and pid with
// SO_PEERCRED. For each request on it, it deletes every header the caller
// sent under the identity header's name (in any case), adds its own,
// signed (package authz/identity), and forwards the request to the
// daemon: streamed both ways, flushed as it arrives (logs -f, events,
// pulls), and for hijacked connections (attach, exec start, BuildKit
// session and grpc, websockets) spliced byte for byte once the daemon has
// answered.
package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/dockplug/dockplug/authz/identity"
	"github.com/dockplug/dockplug/authz/normalize"
)

// Proxy forwards requests to the daemon's socket with the caller's
// identity added.
type Proxy struct {
	upstream string
	key      []byte
	log      *slog.Logger
	rp       *httputil.ReverseProxy
	dialer   net.Dialer
}

// New returns a proxy to the daemon listening on the unix socket
// upstream, signing with key. log may be nil.
func New(upstream string, key []byte, log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{upstream: upstream, key: key, log: log}
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return p.dial(ctx) },
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       p.rewrite,
		Transport:     tr,
		FlushInterval: -1, // streams (logs -f, events, stats) reach the caller as they come
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				log.Warn("proxy: forwarding failed", "method", r.Method, "uri", r.RequestURI, "err", err)
			}
			dockerError(w, http.StatusBadGateway, "dockplug authz-proxy: cannot reach the daemon: "+err.Error())
		},
	}
	return p
}

func (p *Proxy) dial(ctx context.Context) (net.Conn, error) {
	c, err := p.dialer.DialContext(ctx, "unix", p.upstream)
	if err != nil {
		return nil, fmt.Errorf("dial daemon %s: %w", p.upstream, err)
	}
	return c, nil
}

type peerKey struct{}

// Server returns the http.Server that serves the proxy on connections
// from a unix listener: each connection's peer credentials are read once,
// when it is accepted.
func (p *Proxy) Server() *http.Server {
	return &http.Server{
		Handler:           p,
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			cr, err := PeerCred(c)
			if err != nil {
				p.log.Warn("proxy: cannot read the caller's credentials; its requests are refused", "err", err)
				return context.WithValue(ctx, peerKey{}, credErr{err})
			}
			return context.WithValue(ctx, peerKey{}, cr)
		},
	}
}

type credErr struct{ error }

// Serve serves l until ctx ends, then shuts down (in-flight requests get
// a few seconds; hijacked connections are closed).
func (p *Proxy) Serve(ctx context.Context, l net.Listener) error {
	srv := p.Server()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		p.closeHijacked()
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return fmt.Errorf("proxy: serve: %w", err)
}

var (
	hijackedMu sync.Mutex
	hijacked   = map[net.Conn]struct{}{}
)

func (p *Proxy) closeHijacked() {
	hijackedMu.Lock()
	defer hijackedMu.Unlock()
	for c := range hijacked {
		c.Close()
	}
}

// ServeHTTP forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cr, ok := r.Context().Value(peerKey{}).(Cred)
	if !ok {
		dockerError(w, http.StatusForbidden, "dockplug authz-proxy: the caller's credentials cannot be read")
		return
	}
	stripIdentity(r.Header)
	if hijacks(r) {
		p.tunnel(w, r, cr)
		return
	}
	p.rp.ServeHTTP(w, r)
}

// stripIdentity deletes every header the caller sent that the daemon could
// pass on as the identity header.
func stripIdentity(h http.Header) {
	for k := range h {
		if strings.EqualFold(k, identity.Header) {
			delete(h, k)
		}
	}
}

// hijacks: the request may turn its connection into a raw stream. The
// docker CLI and SDK ask for an upgrade (Upgrade: tcp, or websocket);
// older clients just call attach or exec start, and the daemon hijacks.
func hijacks(r *http.Request) bool {
	if r.Header.Get("Upgrade") != "" {
		return true
	}
	switch normalize.Resolve(r.Method, r.RequestURI).Action {
	case "container.attach", "exec.start", "session", "grpc", "container.attach.ws":
		return true
	}
	return false
}

// rewrite prepares a forwarded request (non-hijacking).
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "docker"
	pr.Out.Host = pr.In.Host
	if pr.Out.Host == "" {
		pr.Out.Host = "docker"
	}
	cr, _ := pr.In.Context().Value(peerKey{}).(Cred)
	p.sign(pr.Out, cr)
}

// sign adds the identity header for the request target as the daemon
// will receive it: net/http writes URL.RequestURI() on the request line.
func (p *Proxy) sign(out *http.Request, cr Cred) {
	stripIdentity(out.Header)
	c, err := identity.NewClaims(cr.UID, cr.GID, cr.PID)
	if err != nil {
		// No header: the request is anonymous, which is never more.
		p.log.Error("proxy: no identity for a request", "err", err)
		return
	}
	out.Header.Set(identity.Header, identity.Sign(p.key, c, out.Method, out.URL.RequestURI()))
}

// tunnel forwards a request that may hijack its connection: the request
// goes to a fresh daemon connection; the daemon's answer comes back; if
// it switched protocols (101) or hijacked the connection (a raw or
// multiplexed stream), both connections are spliced until either side is
// done. Otherwise the caller's connection is closed after the answer, so
// that no later request on it can skip the proxy's header.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request, cr Cred) {
	ctx := r.Context()
	up, err := p.dial(ctx)
	if err != nil {
		dockerError(w, http.StatusBadGateway, "dockplug authz-proxy: "+err.Error())
		return
	}
	defer up.Close()
	out := r.Clone(ctx)
	out.URL.Scheme, out.URL.Host = "", ""
	out.RequestURI = ""
	if out.Host == "" {
		out.Host = "docker"
	}
	p.sign(out, cr)
	// Request.Write writes URL.RequestURI() too, and the body (exec
	// start's JSON) with it.
	if err := out.Write(up); err != nil {
		dockerError(w, http.StatusBadGateway, "dockplug authz-proxy: forward: "+err.Error())
		return
	}
	ubr := bufio.NewReader(up)
	resp, err := http.ReadResponse(ubr, out)
	if err != nil {
		dockerError(w, http.StatusBadGateway, "dockplug authz-proxy: read the daemon's answer: "+err.Error())
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		dockerError(w, http.StatusInternalServerError, "dockplug authz-proxy: connection cannot be hijacked")
		return
	}
	conn, cbr, err := hj.Hijack()
	if err != nil {
		p.log.Warn("proxy: hijack", "err", err)
		return
	}
	hijackedMu.Lock()
	hijacked[conn] = struct{}{}
	hijackedMu.Unlock()
	defer func() {
		hijackedMu.Lock()
		delete(hijacked, conn)
		hijackedMu.Unlock()
		conn.Close()
	}()
	if !rawStream(resp) {
		resp.Close = true // Write sends Connection: close
		_ = resp.Write(conn)
		resp.Body.Close()
		return
	}
	// The daemon wrote its status line and headers, then the stream: pass
	// the headers on as they were, then splice.
	var head strings.Builder
	fmt.Fprintf(&head, "HTTP/%d.%d %s\r\n", resp.ProtoMajor, resp.ProtoMinor, resp.Status)
	_ = resp.Header.Write(&head)
	head.WriteString("\r\n")
	if _, err := io.WriteString(conn, head.String()); err != nil {
		return
	}
	splice(conn, cbr.Reader, up, ubr)
}

// rawStream: the daemon took the connection over (101 Switching
// Protocols, or a 200 whose body is a raw or multiplexed stream that ends
// only when the connection does).
func rawStream(resp *http.Response) bool {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return true
	}
	ct := resp.Header.Get("Content-Type")
	return resp.StatusCode == http.StatusOK && resp.ContentLength < 0 && len(resp.TransferEncoding) == 0 &&
		(ct == "application/vnd.docker.raw-stream" || ct == "application/vnd.docker.multiplexed-stream")
}

// splice copies both ways. When the caller closes its writing side (stdin
// done), the daemon's writing side is closed too; when the daemon is done
// (the process exited), everything is.
func splice(client net.Conn, cr io.Reader, up net.Conn, ur io.Reader) {
	go func() {
		_, _ = io.Copy(up, cr)
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	_, _ = io.Copy(client, ur)
	if cw, ok := client.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// dockerError answers as the daemon does: {"message": ...}.
func dockerError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{%q:%q}\n", "message", msg)
}
