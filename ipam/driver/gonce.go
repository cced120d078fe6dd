package driver

// Exactly-once changes: every transaction that changes the global space
// also creates reqs/<nonce>, the record of the request it applies, and
// only if that record does not exist yet. A retry (the reply of an
// earlier attempt was lost) first reads the record: if it is there, the
// earlier attempt was applied and its result is in the record; if not,
// the retry's own transaction, which requires the record to be absent, can
// only be applied if no earlier attempt is. This holds whatever other hosts
// changed in between. Records are written with a lease and expire with it,
// long after the last retry of their request.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dockplug/dockplug/store"
)

// minRequestTTL bounds the lease of request records from below; a record
// lives at least 3/4 of the lease, far longer than the retries of its
// request (Retry.Total, 30s by default).
const minRequestTTL = time.Minute

// reqRecord is a request's record at reqs/<nonce>.
type reqRecord struct {
	Host   string          `json:"host"`
	Op     string          `json:"op"`
	At     time.Time       `json:"at"`
	Result json.RawMessage `json:"result,omitempty"`
}

// reqLeases hands out the lease request records are written with: one
// lease per period of ttl/4, so a record lives at least 3/4 of ttl.
type reqLeases struct {
	mu      sync.Mutex
	id      store.LeaseID
	granted time.Time
}

func (s *globalSpace) reqKey(nonce string) string { return s.prefix + "reqs/" + nonce }

// requestTTL is the lease of request records: 4 times the retry bound, so
// that a record outlives every retry of its request by far.
func (s *globalSpace) requestTTL() time.Duration {
	total := s.cfg.Retry.Total
	if total <= 0 {
		total = 30 * time.Second
	}
	return max(minRequestTTL, 4*total)
}

func (s *globalSpace) reqLease(ctx context.Context) (store.LeaseID, error) {
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	ttl := s.requestTTL()
	if s.leases.id != 0 && time.Since(s.leases.granted) < ttl/4 {
		return s.leases.id, nil
	}
	id, err := s.kv.Grant(ctx, ttl)
	if err != nil {
		return 0, err
	}
	s.leases.id, s.leases.granted = id, time.Now()
	return id, nil
}

// dropReqLease forgets the lease (it was not found: expired early).
func (s *globalSpace) dropReqLease() {
	s.leases.mu.Lock()
	s.leases.id = 0
	s.leases.mu.Unlock()
}

// request is one request of this host: its nonce, and whether a
// transaction applying it was sent (before that, nothing can have been
// applied, so there is nothing to read).
type request struct {
	nonce string
	sent  bool
}

func newRequest() *request { return &request{nonce: newNonce()} }

// applied reports whether request r was applied, with its result decoded
// into result (if not nil).
func (s *globalSpace) applied(ctx context.Context, r *request, result any) (bool, error) {
	if !r.sent {
		return false, nil
	}
	nonce := r.nonce
	kv, ok, err := s.kv.Get(ctx, s.reqKey(nonce))
	if err != nil || !ok {
		return false, err
	}
	var rec reqRecord
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return false, fmt.Errorf("request record %s: %w", nonce, err)
	}
	if rec.Op == opAborted {
		return false, nil // settled as never applied (abort)
	}
	if result != nil && len(rec.Result) > 0 {
		if err := json.Unmarshal(rec.Result, result); err != nil {
			return false, fmt.Errorf("request record %s: %w", nonce, err)
		}
	}
	return true, nil
}

// opAborted marks the record of a request settled as never applied.
const opAborted = "aborted"

// abort settles request r, whose outcome was unknown to its caller (it
// failed): it creates r's record, marked aborted, if there is none, so r
// can never be applied later (a late attempt finds the record). It reports
// whether r was applied before, with its result decoded into result.
func (s *globalSpace) abort(ctx context.Context, r *request, result any) (bool, error) {
	c, o, err := s.once(ctx, r.nonce, opAborted, nil)
	if err != nil {
		return false, err
	}
	ok, _, err := s.kv.Txn(ctx, []store.Cond{c}, o)
	if errors.Is(err, store.ErrLeaseNotFound) {
		s.dropReqLease()
	}
	if err != nil || ok {
		return false, err
	}
	r.sent = true
	return s.applied(ctx, r, result)
}

// once is what makes a transaction the one application of request nonce:
// the condition that its record is absent, and the write of the record
// with result.
func (s *globalSpace) once(ctx context.Context, nonce, op string, result any) (store.Cond, store.Op, error) {
	lease, err := s.reqLease(ctx)
	if err != nil {
		return store.Cond{}, store.Op{}, err
	}
	rec := reqRecord{Host: s.host, Op: op, At: time.Now().UTC()}
	if result != nil {
		rec.Result = mustJSON(result)
	}
	key := s.reqKey(nonce)
	return store.IfAbsent(key), store.Put(key, mustJSON(rec), lease), nil
}

// txnOnce runs the transaction conds/ops as the one application of
// request r (see once).
func (s *globalSpace) txnOnce(ctx context.Context, r *request, op string, result any, conds []store.Cond, ops ...store.Op) (bool, int64, error) {
	nonce := r.nonce
	c, o, err := s.once(ctx, nonce, op, result)
	if err != nil {
		return false, 0, err
	}
	r.sent = true
	ok, rev, err := s.kv.Txn(ctx, append(conds, c), append(ops, o)...)
	if errors.Is(err, store.ErrLeaseNotFound) {
		s.dropReqLease()
		if c, o, err = s.once(ctx, nonce, op, result); err != nil {
			return false, 0, err
		}
		ok, rev, err = s.kv.Txn(ctx, append(conds[:len(conds):len(conds)], c), append(ops[:len(ops):len(ops)], o)...)
	}
	return ok, rev, err
}
