package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP answers one plugin call. Every answer is a JSON object: the
// method's result (at least {}) on 200, {"Err": msg} otherwise.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Done()
	start := time.Now()
	name := strings.TrimPrefix(r.URL.Path, "/")
	rt, ok := s.routes[name]
	if !ok {
		s.finish(s.unknown, start, http.StatusNotFound, nil)
		writeError(w, http.StatusNotFound, "plugin "+s.cfg.Name+" does not implement "+name)
		return
	}
	status := http.StatusOK
	var callErr error
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic in plugin call", "method", name, "panic", p, "stack", string(debug.Stack()))
			status, callErr = http.StatusInternalServerError, fmt.Errorf("panic: %v", p)
			writeError(w, status, fmt.Sprintf("%s: internal error: %v", name, p))
		}
		s.finish(rt, start, status, callErr)
	}()
	if r.Method != http.MethodPost {
		status = http.StatusMethodNotAllowed
		writeError(w, status, name+": method "+r.Method+" not allowed, use POST")
		return
	}
	if rt.fn == nil { // Plugin.Activate
		writeJSON(w, http.StatusOK, s.activate)
		return
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 { // don't keep rare huge bodies alive
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	buf.Reset()
	var body io.Reader = r.Body
	if r.ContentLength < 0 || r.ContentLength > s.cfg.MaxBodyBytes {
		// Only a body of unknown or excessive length needs the limiter:
		// net/http already stops a declared length at that length.
		body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	}
	_, err := buf.ReadFrom(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			status = http.StatusRequestEntityTooLarge
			writeError(w, status, fmt.Sprintf("%s: request body larger than %d bytes", name, mbe.Limit))
			return
		}
		status = http.StatusBadRequest
		writeError(w, status, fmt.Sprintf("%s: read request: %v", name, err))
		return
	}
	resp, err := rt.fn(r.Context(), buf.Bytes())
	if err != nil {
		status, callErr = StatusOf(err), err
		writeError(w, status, err.Error())
		return
	}
	// The request bytes are no longer needed: encode the answer into the
	// same pooled buffer, newline included, and write it at once.
	buf.Reset()
	if err := json.NewEncoder(buf).Encode(resp); err != nil {
		status, callErr = http.StatusInternalServerError, err
		writeError(w, status, fmt.Sprintf("%s: encode response: %v", name, err))
		return
	}
	out := buf.Bytes()
	if string(out) == "null\n" {
		out = emptyObject
	}
	w.Header()["Content-Type"] = contentType
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

var emptyObject = []byte("{}\n")

func (s *Server) finish(rt *route, start time.Time, status int, err error) {
	d := time.Since(start)
	rt.obs.observe(d, status != http.StatusOK)
	// dockerd logs plugin stderr as errors: stay quiet at info.
	level := slog.LevelDebug
	if status >= 500 {
		level = slog.LevelWarn
	}
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	attrs := []any{"method", rt.name, "status", status, "duration", d}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	s.log.Log(context.Background(), level, "call", attrs...)
}

// contentType is shared by every answer: net/http only reads it.
var contentType = []string{MediaType}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = contentType
	w.WriteHeader(status)
	w.Write(body)
	w.Write([]byte{'\n'})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct{ Err string }{msg})
	writeJSON(w, status, body)
}
