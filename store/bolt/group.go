package bolt

import (
	"errors"
	"fmt"
	"sync"

	bbolt "go.etcd.io/bbolt"
)

// Group commits concurrent writes together: one transaction and one fsync
// for every write that arrived while the previous commit was running. A
// lone writer commits at once; unlike bbolt's Batch, nobody waits for a
// timer.
type Group struct {
	db      *bbolt.DB
	mu      sync.Mutex
	pending []*groupWrite
	running bool
}

type groupWrite struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

// ErrSkip, returned (or wrapped) by a write function that changed nothing,
// fails that write alone; any other error fails the whole commit.
var ErrSkip = errors.New("write skipped")

// NewGroup returns a group committer over db.
func NewGroup(db *bbolt.DB) *Group { return &Group{db: db} }

// Update runs fn in a read-write transaction shared with concurrent
// callers and returns once that transaction is durable. fn must return an
// error wrapping ErrSkip if it declines before writing anything; that error
// is returned to its caller only.
func (g *Group) Update(fn func(*bbolt.Tx) error) error {
	w := &groupWrite{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, w)
	lead := !g.running
	g.running = true
	g.mu.Unlock()
	if lead {
		g.commit()
	}
	return <-w.done
}

// commit writes what is pending in one transaction, then hands the next
// batch to a new leader so no caller serves others indefinitely.
func (g *Group) commit() {
	g.mu.Lock()
	batch := g.pending
	g.pending = nil
	g.mu.Unlock()

	results := make([]error, len(batch))
	var err error
	// Whatever happens below, even a panic in a write function, every
	// waiter is answered and the next batch gets a leader: otherwise all
	// later writes would wait forever.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("write panicked, nothing committed: %v", p)
		}
		for i, w := range batch {
			if err != nil {
				w.done <- err
			} else {
				w.done <- results[i]
			}
		}
		g.mu.Lock()
		if len(g.pending) > 0 {
			go g.commit()
		} else {
			g.running = false
		}
		g.mu.Unlock()
	}()
	err = g.db.Update(func(tx *bbolt.Tx) error {
		for i, w := range batch {
			if err := w.fn(tx); err != nil {
				if errors.Is(err, ErrSkip) {
					results[i] = err
					continue
				}
				return err
			}
		}
		return nil
	})
}
