package driver

// Pools of the global space: request, release, and this host's view of one.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store"
)

type storedPool struct {
	rec       gPoolRecord
	key       string
	modRev    int64
	createRev int64
}

func (s *globalSpace) readPools(ctx context.Context) ([]storedPool, int64, error) {
	kvs, rev, err := s.listPrefix(ctx, s.prefix+"pools/", 0)
	if err != nil {
		return nil, 0, err
	}
	out := make([]storedPool, 0, len(kvs))
	for _, kv := range kvs {
		var rec gPoolRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			s.log.Warn("global address space: unreadable pool record", "key", kv.Key, "err", err)
			continue
		}
		out = append(out, storedPool{rec: rec, key: kv.Key, modRev: kv.ModRev, createRev: kv.CreateRev})
	}
	return out, rev, nil
}

func (s *globalSpace) RequestPool(ctx context.Context, req PoolRequest) (PoolInfo, error) {
	if req.Pool.IsValid() {
		req.Pool = req.Pool.Masked()
	}
	if req.SubPool.IsValid() {
		req.SubPool = req.SubPool.Masked()
		if !req.Pool.IsValid() {
			return PoolInfo{}, plugin.BadRequest("global address space: a sub-pool (%s) needs a pool", req.SubPool)
		}
		if req.SubPool == req.Pool {
			req.SubPool = netip.Prefix{}
		}
	}
	if req.Pool.IsValid() {
		// The allocator validates the pair (sub-pool inside pool, family).
		if _, err := alloc.New(req.Pool, req.SubPool); err != nil {
			return PoolInfo{}, asPluginError(fmt.Errorf("global address space: %w", err))
		}
	}
	rq := newRequest()
	for range maxCAS {
		var info PoolInfo
		err := s.do(ctx, func(ctx context.Context) (err error) {
			info, err = s.requestPoolOnce(ctx, req, rq)
			return err
		})
		if errors.Is(err, errCASConflict) {
			continue
		}
		if err != nil {
			return PoolInfo{}, s.storeErr("request pool", err)
		}
		s.log.Debug("global pool", "pool", info.ID, "host", s.host, "hosts", info.Hosts)
		return info, nil
	}
	return PoolInfo{}, plugin.Errorf(503, "global address space: request pool: too much contention, try again")
}

func (s *globalSpace) requestPoolOnce(ctx context.Context, req PoolRequest, rq *request) (PoolInfo, error) {
	// A retry after an attempt whose outcome was unknown: done already?
	var done PoolInfo
	if ok, err := s.applied(ctx, rq, &done); err != nil || ok {
		return done, err
	}
	pools, rev, err := s.readPools(ctx)
	if err != nil {
		return PoolInfo{}, err
	}
	pool := req.Pool
	dynamic := !pool.IsValid()
	if dynamic {
		pa, _ := alloc.NewPoolAllocator(s.cfg.DefaultPools)
		for _, p := range pools {
			pa.Reserve(p.rec.Pool) // existing pools never overlap; ignore
		}
		if pool, err = pa.AllocateSize(req.V6, req.Size, req.Exclude); err != nil {
			if errors.Is(err, alloc.ErrInvalidPrefix) { // no default pool of that size: the error lists them
				return PoolInfo{}, asPluginError(fmt.Errorf("global address space: %w", err))
			}
			return PoolInfo{}, asPluginError(fmt.Errorf("global address space: no free subnet in the default pools %v: %w", s.cfg.DefaultPools, err))
		}
	} else {
		for _, p := range pools {
			if p.rec.Pool != pool {
				continue
			}
			// Join: the same pool requested by another host. This host
			// holds a pool once, as in the local space: two networks on one
			// host cannot share a subnet and gateway. (A retry of this
			// host's own request was recognised by its record above.)
			if liveCounts(p.rec.Hosts)[s.host] > 0 {
				return PoolInfo{}, plugin.Conflict("global address space: pool %s is already allocated on this host (pool ID %s, held by %s); another host may join it, this one cannot hold it twice",
					pool, p.rec.ID, strings.Join(p.rec.info().Hosts, ", "))
			}
			if p.rec.SubPool != req.SubPool {
				return PoolInfo{}, plugin.Conflict("global address space: pool %s is already allocated with sub-pool %s (pool ID %s); cannot use sub-pool %s",
					pool, cmpPrefix(p.rec.SubPool), p.rec.ID, cmpPrefix(req.SubPool))
			}
			rec := p.rec
			rec.Hosts = liveCounts(rec.Hosts)
			rec.Hosts[s.host]++
			ok, _, err := s.txnOnce(ctx, rq, "request pool", rec.info(), []store.Cond{store.IfUnchanged(p.key, p.modRev)},
				store.Put(p.key, mustJSON(rec), 0))
			if err != nil {
				return PoolInfo{}, err
			}
			if !ok {
				return PoolInfo{}, errCASConflict
			}
			return rec.info(), nil
		}
		for _, p := range pools {
			if p.rec.Pool.Overlaps(pool) {
				return PoolInfo{}, plugin.Conflict("global address space: pool %s overlaps pool %s (pool ID %s, held by %s)",
					pool, p.rec.Pool, p.rec.ID, strings.Join(p.rec.info().Hosts, ", "))
			}
		}
	}
	rng := pool
	if req.SubPool.IsValid() {
		rng = req.SubPool
	}
	rec := gPoolRecord{ID: globalPoolID(pool, req.SubPool), Pool: pool, SubPool: req.SubPool, Dynamic: dynamic,
		Hosts: map[string]int{s.host: 1}, BlockBits: blockBitsFor(rng, s.cfg.BlockBits),
		CreatedAt: time.Now().UTC(), Options: req.Options}
	key := s.poolKey(cidrSeg(pool))
	// Create the pool only if no pool was created or changed since the read
	// that found no overlap: two hosts cannot create overlapping pools.
	ok, _, err := s.txnOnce(ctx, rq, "request pool", rec.info(), []store.Cond{
		store.IfAbsent(key),
		store.IfRangeUnchangedSince(s.prefix+"pools/", store.PrefixEnd(s.prefix+"pools/"), rev),
	}, store.Put(key, mustJSON(rec), 0))
	if err != nil {
		return PoolInfo{}, err
	}
	if !ok {
		return PoolInfo{}, errCASConflict
	}
	return rec.info(), nil
}

func (s *globalSpace) ReleasePool(ctx context.Context, poolID string) error {
	pool, _, err := parsePoolID(poolID)
	if err != nil {
		return err
	}
	key := s.poolKey(cidrSeg(pool))
	seg := cidrSeg(pool)
	rq := newRequest()
	type released struct{ Left, Deleted bool }
	for range maxCAS {
		var left, deleted bool
		err := s.do(ctx, func(ctx context.Context) error {
			// Each attempt decides afresh: a retry may find another host
			// joined meanwhile and take the update path instead.
			var done released
			if ok, err := s.applied(ctx, rq, &done); err != nil || ok {
				left, deleted = done.Left, done.Deleted
				return err
			}
			kv, found, err := s.kv.Get(ctx, key)
			if err != nil {
				return err
			}
			if !found {
				return plugin.NotFound("global address space: no pool %s", poolID)
			}
			var rec gPoolRecord
			if err := json.Unmarshal(kv.Value, &rec); err != nil {
				return fmt.Errorf("pool %s: %w", poolID, err)
			}
			if rec.ID != poolID {
				return plugin.NotFound("global address space: no pool %s (pool %s is %s)", poolID, pool, rec.ID)
			}
			if rec.Hosts[s.host] <= 0 {
				return plugin.NotFound("global address space: pool %s is not held by host %s (held by %s)",
					poolID, s.host, strings.Join(rec.info().Hosts, ", "))
			}
			rec.Hosts = liveCounts(rec.Hosts)
			rec.Hosts[s.host]--
			var res released
			if rec.Hosts[s.host] == 0 {
				delete(rec.Hosts, s.host)
				res.Left = true
			}
			cmp := []store.Cond{store.IfUnchanged(key, kv.ModRev)}
			var ok bool
			if len(rec.Hosts) == 0 {
				// The last holder: the pool goes with its blocks and addresses.
				res.Deleted = true
				ok, _, err = s.txnOnce(ctx, rq, "release pool", res, cmp,
					store.Delete(key),
					store.DeleteRange(s.addrDir(seg), store.PrefixEnd(s.addrDir(seg))),
					store.DeleteRange(s.blockDir(seg), store.PrefixEnd(s.blockDir(seg))))
			} else {
				ok, _, err = s.txnOnce(ctx, rq, "release pool", res, cmp, store.Put(key, mustJSON(rec), 0))
			}
			if err != nil {
				return err
			}
			if !ok {
				return errCASConflict
			}
			left, deleted = res.Left, res.Deleted
			return nil
		})
		if errors.Is(err, errCASConflict) {
			continue
		}
		if err != nil {
			return s.storeErr("release pool "+poolID, err)
		}
		if left {
			s.forget(poolID)
			if !deleted {
				s.releaseBlocks(ctx, seg)
			}
		}
		s.log.Debug("global pool released", "pool", poolID, "host", s.host, "deleted", deleted)
		return nil
	}
	return plugin.Errorf(503, "global address space: release pool %s: too much contention, try again", poolID)
}

// forget drops this host's view of a pool.
func (s *globalSpace) forget(poolID string) {
	s.mu.Lock()
	delete(s.pools, poolID)
	s.mu.Unlock()
}

// releaseBlocks gives back every block of the pool this host owns (it no
// longer holds the pool). Best effort: a block is only a hint.
func (s *globalSpace) releaseBlocks(ctx context.Context, seg string) {
	err := s.do(ctx, func(ctx context.Context) error {
		kvs, _, err := s.listPrefix(ctx, s.blockDir(seg), 0)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var br gBlockRecord
			if json.Unmarshal(kv.Value, &br) != nil || br.Host != s.host {
				continue
			}
			if _, _, err := s.kv.Txn(ctx, []store.Cond{store.IfUnchanged(kv.Key, kv.ModRev)}, store.Delete(kv.Key)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("global address space: release blocks", "pool", seg, "err", err)
	}
}

// pool returns this host's view of a pool, loading it from etcd: the pool
// record, the blocks this host owns and the addresses in them.
func (s *globalSpace) pool(ctx context.Context, poolID string) (*gPool, error) {
	s.mu.Lock()
	p := s.pools[poolID]
	s.mu.Unlock()
	if p != nil {
		return p, nil
	}
	poolPfx, _, err := parsePoolID(poolID)
	if err != nil {
		return nil, err
	}
	err = s.do(ctx, func(ctx context.Context) (err error) {
		p, err = s.loadPool(ctx, poolID, poolPfx)
		return err
	})
	if err != nil {
		return nil, s.storeErr("load pool "+poolID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.pools[poolID]; q != nil {
		return q, nil
	}
	s.pools[poolID] = p
	return p, nil
}

func (s *globalSpace) loadPool(ctx context.Context, poolID string, poolPfx netip.Prefix) (*gPool, error) {
	seg := cidrSeg(poolPfx)
	key := s.poolKey(seg)
	pk, rev, err := s.kv.List(ctx, key, key+"\x00", 0)
	if err != nil {
		return nil, err
	}
	if len(pk) == 0 {
		return nil, plugin.NotFound("global address space: no pool %s", poolID)
	}
	var rec gPoolRecord
	if err := json.Unmarshal(pk[0].Value, &rec); err != nil {
		return nil, fmt.Errorf("pool %s: %w", poolID, err)
	}
	if rec.ID != poolID {
		return nil, plugin.NotFound("global address space: no pool %s (pool %s is %s)", poolID, poolPfx, rec.ID)
	}
	p := &gPool{id: poolID, key: key, seg: seg, createRev: pk[0].CreateRev, rec: rec,
		rng: rec.Pool, bb: rec.BlockBits, doubt: map[netip.Addr]gDoubt{}}
	if rec.SubPool.IsValid() {
		p.rng = rec.SubPool
	}
	p.blockAlloc = blockAlloc{pool: rec.Pool, rng: p.rng, bb: rec.BlockBits, gw: rec.Gateway}
	if !p.gw.IsValid() {
		// Not requested yet: the first address of the allocation range is
		// kept for it, as docker's IPAM gives it to the first request.
		if a, err := alloc.New(rec.Pool, rec.SubPool); err == nil {
			p.gw, _ = a.Allocate()
		}
	}
	// This host's blocks, and the addresses in them, at the same revision.
	bkvs, _, err := s.listPrefix(ctx, s.blockDir(seg), rev)
	if err != nil {
		return nil, err
	}
	for _, kv := range bkvs {
		var br gBlockRecord
		if json.Unmarshal(kv.Value, &br) != nil || br.Host != s.host {
			continue
		}
		start, err := parseHexAddr(strings.TrimPrefix(kv.Key, s.blockDir(seg)))
		if err != nil || !p.rng.Contains(start) {
			continue
		}
		b, err := s.readBlock(ctx, p, start, kv.Key, kv.CreateRev, rev)
		if err != nil {
			return nil, err
		}
		p.addBlock(b)
	}
	s.log.Debug("global pool loaded", "pool", poolID, "host", s.host, "blocks", len(p.blocks))
	return p, nil
}

// readBlock reads the addresses of the block at start (key created at
// rev) as of revision atRev and returns it as this host's.
func (s *globalSpace) readBlock(ctx context.Context, p *gPool, start netip.Addr, key string, rev, atRev int64) (*gBlock, error) {
	from, to := p.addrRange(s, p.blockOf(start))
	kvs, _, err := s.kv.List(ctx, from, to, atRev)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b, err := p.newBlock(start, key, rev, s.rangeAddrs(p, kvs), s.ownCount(kvs))
	if err != nil {
		return nil, fmt.Errorf("pool %s block %s: %w", p.id, start, err)
	}
	return b, nil
}

// ownCount counts this host's addresses (gateways aside) among records.
func (s *globalSpace) ownCount(kvs []store.Entry) int {
	n := 0
	for _, kv := range kvs {
		var r gAddrRecord
		if json.Unmarshal(kv.Value, &r) == nil && r.Host == s.host && !r.Gateway && !r.Aux {
			n++
		}
	}
	return n
}

func (s *globalSpace) rangeAddrs(p *gPool, kvs []store.Entry) []netip.Addr {
	out := make([]netip.Addr, 0, len(kvs))
	dir := s.addrDir(p.seg)
	for _, kv := range kvs {
		if a, err := parseHexAddr(strings.TrimPrefix(kv.Key, dir)); err == nil && p.rec.Pool.Contains(a) {
			out = append(out, a)
		}
	}
	return out
}

// markUsed records in this host's block, if it owns the block of a, that a
// is taken, and if mine, counts it as this host's; it reports whether it
// counted it.
func (p *gPool) markUsed(a netip.Addr, mine bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.use(a, mine)
}
