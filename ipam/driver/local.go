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
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
)

const (
	poolsBucket = "pools" // PoolID -> poolRecord
	addrsBucket = "addrs" // PoolID -> bucket of address -> AddrInfo
)

// poolRecord is a pool as stored.
type poolRecord struct {
	PoolInfo
	Options map[string]string `json:"options,omitempty"`
	// Next is where serial allocation resumes, kept so a restart does not
	// hand out recently released addresses again.
	Next netip.Addr `json:"next,omitzero"`
}

// localSpace keeps pools and addresses in bbolt, with an in-memory
// allocator per pool rebuilt at start. Each change is fsync'd before the
// call returns.
type localSpace struct {
	name   string
	db     *bbolt.DB
	hostID string

	mu    sync.Mutex // guards pools, subnets and every allocator
	pools map[string]*localPool
	subs  *alloc.PoolAllocator
}

type localPool struct {
	rec poolRecord
	a   *alloc.Allocator
}

// newLocalSpace loads every pool and address from db.
func newLocalSpace(db *bbolt.DB, name, hostID string, defaults []alloc.PoolSpec) (*localSpace, error) {
	subs, err := alloc.NewPoolAllocator(defaults)
	if err != nil {
		return nil, err
	}
	s := &localSpace{name: name, db: db, hostID: hostID, pools: map[string]*localPool{}, subs: subs}
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
				err := b.ForEach(func(ak, _ []byte) error {
					a, err := netip.ParseAddr(string(ak))
					if err != nil {
						return fmt.Errorf("pool %s: address %q: %w", k, ak, err)
					}
					list = append(list, a)
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
			if rec.Next.IsValid() {
				snap := a.Snapshot()
				snap.Next = rec.Next
				if a, err = alloc.FromSnapshot(snap); err != nil {
					return fmt.Errorf("pool %s: %w", k, err)
				}
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
		p, err := s.subs.Allocate(req.V6, req.Exclude)
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
		return err
	}
	delete(s.pools, poolID)
	s.subs.Release(p.rec.Pool)
	return nil
}

func (s *localSpace) RequestAddress(ctx context.Context, req AddrRequest) (netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pools[req.PoolID]
	if !ok {
		return netip.Addr{}, plugin.NotFound("no pool %s", req.PoolID)
	}
	req.Serial = req.Serial || serialPool(p.rec.Options)
	addr, err := pick(p.a, req)
	if err != nil {
		return netip.Addr{}, asPluginError(fmt.Errorf("pool %s: %w", req.PoolID, err))
	}
	info := AddrInfo{Address: addr, Endpoint: req.Endpoint, Gateway: req.Gateway, Host: s.hostID, MAC: req.MAC, At: time.Now().UTC()}
	rec := p.rec
	if req.Serial {
		rec.Next = addr.Next()
	}
	if req.Gateway {
		rec.Gateway = addr
	}
	err = s.put(func(tx *bbolt.Tx) error {
		b, err := tx.Bucket([]byte(addrsBucket)).CreateBucketIfNotExists([]byte(req.PoolID))
		if err != nil {
			return err
		}
		if err := putJSON(b, addr.String(), info); err != nil {
			return err
		}
		if rec.Next != p.rec.Next || rec.Gateway != p.rec.Gateway {
			return putJSON(tx.Bucket([]byte(poolsBucket)), req.PoolID, rec)
		}
		return nil
	})
	if err != nil {
		p.a.Release(addr)
		return netip.Addr{}, err
	}
	p.rec = rec
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
	defer s.mu.Unlock()
	p, ok := s.pools[poolID]
	if !ok {
		return plugin.NotFound("no pool %s", poolID)
	}
	if !p.a.IsAllocated(addr) {
		return nil
	}
	rec := p.rec
	if rec.Gateway == addr {
		rec.Gateway = netip.Addr{}
	}
	err := s.put(func(tx *bbolt.Tx) error {
		if b := tx.Bucket([]byte(addrsBucket)).Bucket([]byte(poolID)); b != nil {
			if err := b.Delete([]byte(addr.String())); err != nil {
				return err
			}
		}
		if rec.Gateway != p.rec.Gateway {
			return putJSON(tx.Bucket([]byte(poolsBucket)), poolID, rec)
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.a.Release(addr)
	p.rec = rec
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

// put runs one durable write; bbolt fsyncs before Update returns.
func (s *localSpace) put(fn func(tx *bbolt.Tx) error) error {
	if err := s.db.Update(fn); err != nil {
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
