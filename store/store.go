package store

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseNotFound: a write named a lease that expired or was revoked.
var ErrLeaseNotFound = errors.New("lease not found")

// KV is the small transactional key-value interface that drivers keep
// shared state in (store/etcd implements it over etcd). Keys are strings,
// values bytes; every change gets a revision, a counter that only grows,
// and a key remembers the revision that created it (CreateRev) and the one
// that last changed it (ModRev). A transaction applies its operations only
// if all its conditions hold, atomically with respect to every other
// transaction; conditions are the only way to detect a concurrent writer.
//
// An error from Txn may mean the transaction was applied or not (the reply
// was lost): a caller that retries must be able to tell, e.g. by writing a
// record keyed by a request nonce in the same transaction (see IfAbsent).
type KV interface {
	// Get reads one key; ok is false if it does not exist.
	Get(ctx context.Context, key string) (kv Entry, ok bool, err error)
	// List reads the keys in [from, to) in key order at revision rev (0:
	// the latest) and returns them with the revision read.
	List(ctx context.Context, from, to string, rev int64) ([]Entry, int64, error)
	// Count counts the keys in [from, to).
	Count(ctx context.Context, from, to string) (int64, error)
	// Txn applies ops if every condition holds; ok reports whether they
	// held, rev is the store's revision after the transaction.
	Txn(ctx context.Context, conds []Cond, ops ...Op) (ok bool, rev int64, err error)
	// Grant creates a lease of ttl: keys written with it are deleted when
	// it expires. KeepAlive keeps it alive until ctx ends; the returned
	// channel is closed when the lease is lost (expired or revoked).
	Grant(ctx context.Context, ttl time.Duration) (LeaseID, error)
	KeepAlive(ctx context.Context, id LeaseID) (<-chan struct{}, error)
	// Revoke ends a lease at once, deleting its keys.
	Revoke(ctx context.Context, id LeaseID) error
}

// Entry is one key as read.
type Entry struct {
	Key       string
	Value     []byte
	CreateRev int64
	ModRev    int64
	Lease     LeaseID
}

// LeaseID names a lease; 0 is no lease.
type LeaseID int64

// PrefixEnd is the end of the range of keys that start with prefix, for
// List and Count: [prefix, PrefixEnd(prefix)).
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00" // every key
}

// CondKind is what a condition compares.
type CondKind int

// Condition kinds; see the constructors.
const (
	CondAbsent CondKind = iota + 1
	CondCreated
	CondUnchanged
	CondValue
	CondRangeUnchangedSince
)

// Cond is one condition of a transaction.
type Cond struct {
	Kind  CondKind
	Key   string
	End   string // CondRangeUnchangedSince: [Key, End)
	Rev   int64
	Value []byte
}

// IfAbsent holds if key does not exist (create-if-absent).
func IfAbsent(key string) Cond { return Cond{Kind: CondAbsent, Key: key} }

// IfCreated holds if key exists and was created at rev: it is still the
// same incarnation of the key, whatever was written to it since.
func IfCreated(key string, rev int64) Cond { return Cond{Kind: CondCreated, Key: key, Rev: rev} }

// IfUnchanged holds if key was last changed at modRev (compare-and-put,
// compare-and-delete).
func IfUnchanged(key string, modRev int64) Cond {
	return Cond{Kind: CondUnchanged, Key: key, Rev: modRev}
}

// IfValue holds if key holds exactly value.
func IfValue(key string, value []byte) Cond { return Cond{Kind: CondValue, Key: key, Value: value} }

// IfRangeUnchangedSince holds if no key in [from, to) was created or
// changed after rev (keys deleted since are not seen).
func IfRangeUnchangedSince(from, to string, rev int64) Cond {
	return Cond{Kind: CondRangeUnchangedSince, Key: from, End: to, Rev: rev}
}

// OpKind is what an operation does.
type OpKind int

// Operation kinds.
const (
	OpPut OpKind = iota + 1
	OpDelete
	OpDeleteRange
)

// Op is one write of a transaction.
type Op struct {
	Kind  OpKind
	Key   string
	End   string // OpDeleteRange: [Key, End)
	Value []byte
	Lease LeaseID
}

// Put writes key (with lease, if not 0).
func Put(key string, value []byte, lease LeaseID) Op {
	return Op{Kind: OpPut, Key: key, Value: value, Lease: lease}
}

// Delete deletes key.
func Delete(key string) Op { return Op{Kind: OpDelete, Key: key} }

// DeleteRange deletes the keys in [from, to).
func DeleteRange(from, to string) Op { return Op{Kind: OpDeleteRange, Key: from, End: to} }
