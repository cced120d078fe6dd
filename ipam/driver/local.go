package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store/bolt"
)

const (
	poolsBucket = "pools" // PoolID -> poolRecord
	addrsBucket = "addrs" // PoolID -> bucket of address -> AddrInfo
)

// poolRecord is a pool as stored. Its Gateway is not stored here but
// derived from the address records, so that an address call writes exactly
// one key (and concurrent calls can share one fsync).
type poolRecord struct {
	PoolInfo
	Options map[string]string `json:"options,omitempty"`
}

// localSpace keeps pools and addresses in bbolt, with an in-memory
// allocator per pool rebuilt at start. Each change is fsync'd before the
// call returns; concurrent address calls share commits (store/bolt.Group).
//
// Ordering keeps memory and disk consistent without holding the lock over
// an address call's fsync (pool calls, which are rare, do hold it): an
// allocation is taken in memory first and written after (a
// crash in between loses only an unacknowledged address); a release is
// written first and freed in memory after, so no one can be handed an
// address whose release is not yet durable.
type localSpace struct {
	name   string
	db     *bbolt.DB
	group  *bolt.Group
	hostID string

	mu    sync.Mutex // guards pools, subnets and every allocator
	pools map[string]*localPool
	subs  *alloc.PoolAllocator
}

type localPool struct {
	rec poolRecord
	a   *alloc.Allocator
	// gone is set before the pool's release is written. Pool IDs repeat
	// (the same CIDR, or the lowest free subnet again), so a write queued
	// for this pool must not land in a successor with the same ID: bbolt
	// runs one write transaction at a time, and each one that follows the
	// release sees the flag.
	gone atomic.Bool
}

// newLocalSpace loads every pool and address from db.
func newLocalSpace(db *bbolt.DB, name, hostID string, defaults []alloc.PoolSpec) (*localSpace, error) {
	subs, err := alloc.NewPoolAllocator(defaults)
	if err != nil {
		return nil, err
	}
	s := &localSpace{name: name, db: db, group: bolt.NewGroup(db), hostID: hostID, pools: map[string]*localPool{}, subs: subs}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range []string{poolsBucket, addrsBucket} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		addrs := tx.Bucket([]byte(addrsBucket))
		return tx.Bucket([]byte(poolsBucket)).ForEach(func(k, v []byte) error {
			var rec poolRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("pool %s: %w", k, err)
			}
			var list []netip.Addr
			if b := addrs.Bucket(k); b != nil {
				err := b.ForEach(func(ak, v []byte) error {
					var info AddrInfo
					if err := json.Unmarshal(v, &info); err != nil {
						return fmt.Errorf("pool %s: address %q: %w", k, ak, err)
					}
					if info.Gateway {
						rec.Gateway = info.Address
					}
					list = append(list, info.Address)
					return nil
				})
				if err != nil {
					return err
				}
			}
			a, err := alloc.Restore(rec.Pool, rec.SubPool, list)
			if err != nil {
				return fmt.Errorf("pool %s: %w", k, err)
			}
			if err := subs.Reserve(rec.Pool); err != nil {
				return fmt.Errorf("pool %s: %w", k, err)
			}
			s.pools[rec.ID] = &localPool{rec: rec, a: a}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load %s address space: %w", name, err)
	}
	return s, nil
}

func (s *localSpace) Close() error { return nil } // the db belongs to the driver

func (s *localSpace) RequestPool(ctx context.Context, req PoolRequest) (PoolInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pool := req.Pool
	dynamic := !pool.IsValid()
	if dynamic {
		p, err := s.subs.AllocateSize(req.V6, req.Size, req.Exclude)
		if err != nil {
			return PoolInfo{}, asPluginError(fmt.Errorf("%s address space: %w", s.name, err))
		}
		pool = p
	} else {
		if existing, ok := s.subs.Overlaps(pool); ok {
			return PoolInfo{}, plugin.Conflict("pool %s overlaps pool %s already allocated in the %s address space", pool, existing, s.name)
		}
		if err := s.subs.Reserve(pool); err != nil {
			return PoolInfo{}, asPluginError(err)
		}
	}
	a, err := alloc.New(pool, req.SubPool)
	if err != nil {
		s.subs.Release(pool)
		return PoolInfo{}, asPluginError(err)
	}
	id := s.name + "/" + pool.String()
	if req.SubPool.IsValid() {
		id += "/" + req.SubPool.Masked().String()
	}
	rec := poolRecord{PoolInfo: PoolInfo{ID: id, Space: s.name, Pool: pool, SubPool: req.SubPool, Dynamic: dynamic,
		CreatedAt: time.Now().UTC()}, Options: req.Options}
	if err := s.put(func(tx *bbolt.Tx) error { return putJSON(tx.Bucket([]byte(poolsBucket)), id, rec) }); err != nil {
		s.subs.Release(pool)
		return PoolInfo{}, err
	}
	s.pools[id] = &localPool{rec: rec, a: a}
	return rec.PoolInfo, nil
}

func (s *localSpace) ReleasePool(ctx context.Context, poolID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pools[poolID]
	if !ok {
		return plugin.NotFound("no pool %s", poolID)
	}
	p.gone.Store(true)
	err := s.put(func(tx *bbolt.Tx) error {
		if err := tx.Bucket([]byte(poolsBucket)).Delete([]byte(poolID)); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(addrsBucket)).DeleteBucket([]byte(poolID)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		p.gone.Store(false)
		return err
	}
	delete(s.pools, poolID)
	s.subs.Release(p.rec.Pool)
	return nil
}

func (s *localSpace) RequestAddress(ctx context.Context, req AddrRequest) (netip.Addr, error) {
	s.mu.Lock()
	p, ok := s.pools[req.PoolID]
	if !ok {
		s.mu.Unlock()
		return netip.Addr{}, plugin.NotFound("no pool %s", req.PoolID)
	}
	if req.Gateway && !req.Address.IsValid() && p.rec.Gateway.IsValid() {
		// One gateway per pool, as in the global space: asking again
		// answers the same (already durable) address.
		gw := p.rec.Gateway
		s.mu.Unlock()
		return gw, nil
	}
	req.Serial = req.Serial || serialPool(p.rec.Options)
	addr, err := pick(p.a, req)
	s.mu.Unlock()
	if err != nil {
		return netip.Addr{}, asPluginError(fmt.Errorf("pool %s: %w", req.PoolID, err))
	}
	info := AddrInfo{Address: addr, Endpoint: req.Endpoint, Gateway: req.Gateway, Host: s.hostID, MAC: req.MAC, At: time.Now().UTC()}
	err = s.batch(func(tx *bbolt.Tx) error {
		if p.gone.Load() {
			return &plugin.Error{Status: 404, Msg: "pool " + req.PoolID + " was released", Err: bolt.ErrSkip}
		}
		b, err := tx.Bucket([]byte(addrsBucket)).CreateBucketIfNotExists([]byte(req.PoolID))
		if err != nil {
			return err
		}
		return putJSON(b, addr.String(), info)
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		p.a.Release(addr)
		return netip.Addr{}, err
	}
	if req.Gateway {
		p.rec.Gateway = addr
	}
	return addr, nil
}

// pick chooses an address with the allocator: the preferred one, else the
// next serial one, else the first free one (for a gateway of a fresh pool,
// the first address of the range, as docker's own IPAM does).
func pick(a *alloc.Allocator, req AddrRequest) (netip.Addr, error) {
	if req.Address.IsValid() {
		return req.Address, a.AllocateSpecific(req.Address)
	}
	if req.Serial {
		return a.AllocateSerial()
	}
	return a.Allocate()
}

func (s *localSpace) ReleaseAddress(ctx context.Context, poolID string, addr netip.Addr) error {
	s.mu.Lock()
	p, ok := s.pools[poolID]
	held := ok && p.a.IsAllocated(addr)
	s.mu.Unlock()
	if !ok {
		return plugin.NotFound("no pool %s", poolID)
	}
	if !held {
		return nil
	}
	// Delete only a durable record, and free the address in memory only
	// if one was deleted: an allocation taken in memory but not yet
	// written (or a pool released meanwhile) is not this release's to free.
	err := s.batch(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(addrsBucket)).Bucket([]byte(poolID))
		if p.gone.Load() || b == nil || b.Get([]byte(addr.String())) == nil {
			return errNotHeld
		}
		return b.Delete([]byte(addr.String()))
	})
	if errors.Is(err, errNotHeld) {
		return nil
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p.a.Release(addr)
	if p.rec.Gateway == addr {
		p.rec.Gateway = netip.Addr{}
	}
	return nil
}

func (s *localSpace) Pools(ctx context.Context) ([]PoolInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PoolInfo, 0, len(s.pools))
	for _, p := range s.pools {
		info := p.rec.PoolInfo
		info.Allocated = p.a.Count()
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *localSpace) Addresses(ctx context.Context, poolID string) ([]AddrInfo, error) {
	s.mu.Lock()
	_, ok := s.pools[poolID]
	s.mu.Unlock()
	if !ok {
		return nil, plugin.NotFound("no pool %s", poolID)
	}
	var out []AddrInfo
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte(addrsBucket)).Bucket([]byte(poolID))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var a AddrInfo
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read pool %s: %w", poolID, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address.Less(out[j].Address) })
	return out, nil
}

// errNotHeld declines a release whose address has no durable record.
var errNotHeld = fmt.Errorf("address not held: %w", bolt.ErrSkip)

// put runs one durable write; bbolt fsyncs before Update returns.
func (s *localSpace) put(fn func(tx *bbolt.Tx) error) error {
	if err := s.db.Update(fn); err != nil {
		return fmt.Errorf("%s address space: write state: %w", s.name, err)
	}
	return nil
}

// batch is put for writes that may share a commit with concurrent ones;
// it too returns only once the commit is fsync'd.
func (s *localSpace) batch(fn func(tx *bbolt.Tx) error) error {
	if err := s.group.Update(fn); err != nil {
		var pe *plugin.Error
		if errors.As(err, &pe) {
			return err
		}
		return fmt.Errorf("%s address space: write state: %w", s.name, err)
	}
	return nil
}

func putJSON(b *bbolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// spaceOf is the address space a PoolID belongs to.
func spaceOf(poolID string) string {
	name, _, _ := strings.Cut(poolID, "/")
	return name
}
