package driver

// Addresses of the global space: the transactions that hand them out and
// free them, on top of this host's block allocator (blocks.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store"
	"github.com/dockplug/dockplug/store/etcd"
)

// ---- addresses ----

type commitResult int

const (
	committed commitResult = iota
	taken                  // the address key exists, another's
	poolGone               // the pool was deleted (or recreated)
	blockLost              // the block is no longer this host's
)

// commitAddr creates the key of a with val, if it does not exist, the pool
// is the one this host knows and (b != nil) b is still this host's. It
// returns the existing record when taken.
func (s *globalSpace) commitAddr(ctx context.Context, p *gPool, b *gBlock, a netip.Addr, val []byte, rq *request) (commitResult, *gAddrRecord, error) {
	key := p.addrKey(s, a)
	cmps := []store.Cond{store.IfAbsent(key), store.IfCreated(p.key, p.createRev)}
	if b != nil {
		cmps = append(cmps, store.IfCreated(b.key, b.rev))
	}
	var res commitResult
	var other *gAddrRecord
	err := s.do(ctx, func(ctx context.Context) error {
		if ok, err := s.applied(ctx, rq, nil); err != nil || ok {
			res = committed // an earlier attempt went through
			return err
		}
		ok, _, err := s.txnOnce(ctx, rq, "request address", a, cmps, store.Put(key, val, 0))
		if err != nil {
			return err
		}
		if ok {
			res = committed
			return nil
		}
		// Which condition failed: read after the fact. A key that is gone
		// again, in a pool and block still there, is as good as taken.
		if ok, err := s.applied(ctx, rq, nil); err != nil || ok {
			res = committed // an earlier attempt went through after all
			return err
		}
		kv, found, err := s.kv.Get(ctx, key)
		if err != nil {
			return err
		}
		if found {
			var rec gAddrRecord
			json.Unmarshal(kv.Value, &rec)
			res, other = taken, &rec
			return nil
		}
		if pk, found, err := s.kv.Get(ctx, p.key); err != nil {
			return err
		} else if !found || pk.CreateRev != p.createRev {
			res = poolGone
			return nil
		}
		if b != nil {
			if bk, found, err := s.kv.Get(ctx, b.key); err != nil {
				return err
			} else if !found || bk.CreateRev != b.rev {
				res = blockLost
				return nil
			}
		}
		res, other = taken, &gAddrRecord{}
		return nil
	})
	return res, other, err
}

func (s *globalSpace) newAddrRecord(req AddrRequest, a netip.Addr, nonce string) gAddrRecord {
	return gAddrRecord{AddrInfo: AddrInfo{Address: a, Endpoint: req.Endpoint, Gateway: req.Gateway, Host: s.host,
		MAC: req.MAC, At: time.Now().UTC()}, Req: nonce}
}

func (s *globalSpace) RequestAddress(ctx context.Context, req AddrRequest) (netip.Addr, error) {
	for range 3 { // a pool deleted and recreated under us: load it again
		p, err := s.pool(ctx, req.PoolID)
		if err != nil {
			return netip.Addr{}, err
		}
		s.resolveDoubts(ctx, p)
		req.Serial = req.Serial || serialPool(p.rec.Options)
		var a netip.Addr
		switch {
		case req.Gateway:
			a, err = s.requestGateway(ctx, p, req)
		case req.Address.IsValid() && req.Endpoint == "":
			a, err = s.requestAux(ctx, p, req)
		case req.Address.IsValid():
			a, err = s.requestSpecific(ctx, p, req)
		default:
			a, err = s.requestDynamic(ctx, p, req)
		}
		if errors.Is(err, errPoolGone) {
			s.forgetPool(p)
			continue
		}
		return a, err
	}
	return netip.Addr{}, plugin.NotFound("global address space: pool %s was deleted", req.PoolID)
}

var errPoolGone = errors.New("pool deleted")

// forgetPool drops p (if it is still the current view of its pool).
func (s *globalSpace) forgetPool(p *gPool) {
	s.mu.Lock()
	if s.pools[p.id] == p {
		delete(s.pools, p.id)
	}
	s.mu.Unlock()
}

// checkAddr rejects addresses that can never be allocated in p.
func checkAddr(p *gPool, a netip.Addr) error { return alloc.Check(p.rec.Pool, a) }

func (s *globalSpace) requestSpecific(ctx context.Context, p *gPool, req AddrRequest) (netip.Addr, error) {
	a := req.Address
	if err := checkAddr(p, a); err != nil {
		return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: %w", p.id, err))
	}
	rq := newRequest()
	val := mustJSON(s.newAddrRecord(req, a, rq.nonce))
	res, other, err := s.commitAddr(ctx, p, nil, a, val, rq)
	if err != nil {
		counted := p.markUsed(a, true)
		p.mu.Lock()
		p.doubt[a] = gDoubt{key: p.addrKey(s, a), val: val, counted: counted, rq: rq}
		p.mu.Unlock()
		return netip.Addr{}, s.storeErr("request address "+a.String(), err)
	}
	switch res {
	case committed:
		p.markUsed(a, true)
		return a, nil
	case taken:
		p.markUsed(a, false)
		return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: %w: %s", p.id, alloc.ErrInUse, holder(a, other)))
	}
	return netip.Addr{}, errPoolGone
}

func (s *globalSpace) requestDynamic(ctx context.Context, p *gPool, req AddrRequest) (netip.Addr, error) {
	rq := newRequest()
	wrap := false
	for range 10000 {
		if err := ctx.Err(); err != nil {
			return netip.Addr{}, s.storeErr("request address", err)
		}
		p.mu.Lock()
		a, b := p.pick(req.Serial, wrap)
		gen := p.claims
		p.mu.Unlock()
		if b == nil {
			ok, err := s.claimBlock(ctx, p, req.Serial && !wrap, gen)
			if err != nil {
				return netip.Addr{}, err
			}
			if ok {
				continue
			}
			if req.Serial && !wrap {
				wrap = true // no block after the cursor: wrap around, as docker does
				continue
			}
			// No unclaimed block left: free addresses in others' blocks.
			return s.borrow(ctx, p, req)
		}
		val := mustJSON(s.newAddrRecord(req, a, rq.nonce))
		res, _, err := s.commitAddr(ctx, p, b, a, val, rq)
		if err != nil {
			p.mu.Lock()
			p.doubt[a] = gDoubt{key: p.addrKey(s, a), val: val, counted: true, rq: rq} // stays marked used
			p.mu.Unlock()
			return netip.Addr{}, s.storeErr("request address", err)
		}
		switch res {
		case committed:
			return a, nil
		case taken:
			// Another host's (a preferred address): stays marked used.
			p.mu.Lock()
			b.own--
			p.mu.Unlock()
			continue
		case blockLost:
			p.mu.Lock()
			p.dropBlock(b)
			p.mu.Unlock()
			continue
		case poolGone:
			return netip.Addr{}, errPoolGone
		}
	}
	return netip.Addr{}, plugin.Errorf(503, "global address space: pool %s: too many conflicts, try again", p.id)
}

// the serial cursor if afterCursor) and loads its addresses. gen is the
// p.claims the caller saw when it found no free address. false: no
// unclaimed block is left.
func (s *globalSpace) claimBlock(ctx context.Context, p *gPool, afterCursor bool, gen int) (bool, error) {
	p.claimMu.Lock()
	defer p.claimMu.Unlock()
	// Another call may have claimed one since the caller looked.
	p.mu.Lock()
	again := p.claims != gen
	p.mu.Unlock()
	if again {
		return true, nil
	}
	nonce := newNonce()
	collected := false
	for range maxCAS {
		var got *gBlock
		var none bool
		err := s.do(ctx, func(ctx context.Context) error {
			kvs, _, err := s.listPrefix(ctx, s.blockDir(p.seg), 0)
			if err != nil {
				return err
			}
			claimed := make([]netip.Addr, 0, len(kvs))
			for _, kv := range kvs {
				start, err := parseHexAddr(strings.TrimPrefix(kv.Key, s.blockDir(p.seg)))
				if err != nil {
					continue
				}
				var br gBlockRecord
				if json.Unmarshal(kv.Value, &br) == nil && br.Nonce == nonce {
					// An earlier attempt claimed it: read its addresses.
					got, err = s.readBlock(ctx, p, start, kv.Key, kv.CreateRev, 0)
					return err
				}
				claimed = append(claimed, start)
			}
			p.mu.Lock()
			start, ok := p.unclaimed(claimed, afterCursor)
			p.mu.Unlock()
			if !ok {
				none = true
				return nil
			}
			key := s.blockDir(p.seg) + hexAddr(start)
			br := gBlockRecord{Host: s.host, Block: p.blockOf(start), At: time.Now().UTC(), Nonce: nonce}
			ok, rev, err := s.kv.Txn(ctx, []store.Cond{store.IfAbsent(key), store.IfCreated(p.key, p.createRev)},
				store.Put(key, mustJSON(br), 0))
			if err != nil {
				return err
			}
			if !ok {
				if pk, found, err := s.kv.Get(ctx, p.key); err != nil {
					return err
				} else if !found || pk.CreateRev != p.createRev {
					return errPoolGone
				}
				return errCASConflict // another host claimed it first
			}
			// The block's addresses as of the claim.
			got, err = s.readBlock(ctx, p, start, key, rev, rev)
			return err
		})
		switch {
		case errors.Is(err, errCASConflict):
			continue
		case errors.Is(err, errPoolGone):
			return false, err
		case err != nil:
			return false, s.storeErr("claim a block of pool "+p.id, err)
		case none && !collected:
			// Blocks of hosts gone that hold no address are free: take
			// them back, then look again.
			collected = true
			var freed []GCBlock
			err := s.do(ctx, func(ctx context.Context) (err error) {
				freed, err = s.collect(ctx, p.seg, true)
				return err
			})
			if err != nil {
				return false, s.storeErr("free the blocks of hosts gone in pool "+p.id, err)
			}
			for _, g := range freed {
				if g.Freed {
					s.log.Info("global address space: freed the empty block of a host gone", "pool", p.id, "block", g.Block, "host", g.Host)
				}
			}
			continue
		case none:
			return false, nil
		}
		p.mu.Lock()
		p.addBlock(got)
		p.mu.Unlock()
		s.log.Debug("global block claimed", "pool", p.id, "block", got.pfx, "host", s.host)
		return true, nil
	}
	return false, plugin.Errorf(503, "global address space: pool %s: too much contention for blocks, try again", p.id)
}

// poolAllocator is an allocator holding every address of the pool, from
// a fresh read of the store; op names the caller in errors.
func (s *globalSpace) poolAllocator(ctx context.Context, p *gPool, op string) (*alloc.Allocator, error) {
	var used []netip.Addr
	err := s.do(ctx, func(ctx context.Context) error {
		from, to := p.addrRange(s, p.rec.Pool)
		kvs, _, err := s.kv.List(ctx, from, to, 0)
		if err != nil {
			return err
		}
		used = s.rangeAddrs(p, kvs)
		return nil
	})
	if err != nil {
		return nil, s.storeErr(op, err)
	}
	a, err := alloc.Restore(p.rec.Pool, p.rec.SubPool, used)
	if err != nil {
		return nil, fmt.Errorf("global address space: pool %s: %w", p.id, err)
	}
	return a, nil
}

// borrow allocates outside this host's blocks, from a fresh read of every
// address of the pool: the pool has no unclaimed block left.
func (s *globalSpace) borrow(ctx context.Context, p *gPool, req AddrRequest) (netip.Addr, error) {
	a0, err := s.poolAllocator(ctx, p, "request address")
	if err != nil {
		return netip.Addr{}, err
	}
	p.mu.Lock()
	if p.gw.IsValid() {
		a0.AllocateSpecific(p.gw)
	}
	if req.Serial && p.serial.IsValid() && p.rng.Contains(p.serial) {
		snap := a0.Snapshot()
		snap.Next = p.serial
		if a1, err := alloc.FromSnapshot(snap); err == nil {
			a0 = a1
		}
	}
	for a := range p.doubt {
		a0.AllocateSpecific(a)
	}
	p.mu.Unlock()
	rq := newRequest()
	for {
		var a netip.Addr
		if req.Serial {
			a, err = a0.AllocateSerial()
		} else {
			a, err = a0.Allocate()
		}
		if err != nil {
			return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: %w", p.id, err))
		}
		// In one of this host's blocks: take it there too, unless a
		// concurrent call of this host has it.
		p.mu.Lock()
		b := p.ownBlock(a)
		if b != nil {
			if b.a.AllocateSpecific(a) != nil {
				p.mu.Unlock()
				continue
			}
			b.own++
		}
		p.mu.Unlock()
		val := mustJSON(s.newAddrRecord(req, a, rq.nonce))
		res, _, err := s.commitAddr(ctx, p, nil, a, val, rq)
		if err != nil {
			p.mu.Lock()
			p.doubt[a] = gDoubt{key: p.addrKey(s, a), val: val, counted: b != nil, rq: rq}
			p.mu.Unlock()
			return netip.Addr{}, s.storeErr("request address", err)
		}
		if res != committed && b != nil {
			p.mu.Lock()
			b.own--
			p.mu.Unlock()
		}
		switch res {
		case committed:
			if req.Serial {
				p.mu.Lock()
				p.serial = a.Next()
				p.mu.Unlock()
			}
			return a, nil
		case poolGone:
			return netip.Addr{}, errPoolGone
		}
		if err := ctx.Err(); err != nil {
			return netip.Addr{}, s.storeErr("request address", err)
		}
	}
}

// resolveDoubts settles the changes whose outcome was unknown to their
// caller (they failed), which must therefore come to nothing. Each request
// is aborted (it can then never be applied late); if it was applied, it is
// undone: an address record is deleted if it still holds what this host
// wrote, a gateway or aux hold released. The address is freed here if its
// key is gone.
func (s *globalSpace) resolveDoubts(ctx context.Context, p *gPool) {
	p.mu.Lock()
	if (len(p.doubt) == 0 && len(p.shared) == 0) || time.Since(p.doubtTry) < time.Second {
		p.mu.Unlock()
		return
	}
	p.doubtTry = time.Now()
	doubts := make(map[netip.Addr]gDoubt, len(p.doubt))
	for a, d := range p.doubt {
		doubts[a] = d
	}
	shared := slices.Clone(p.shared)
	p.mu.Unlock()
	retry := etcd.Retry{Attempt: 2 * time.Second, Total: 3 * time.Second}
	for _, rq := range shared {
		if err := s.settleShared(ctx, p, rq, retry); err != nil {
			s.log.Warn("global address space: settle a gateway or aux request of unknown outcome", "pool", p.id, "err", err)
			return // etcd still away: later
		}
		p.mu.Lock()
		p.shared = slices.DeleteFunc(p.shared, func(x *request) bool { return x == rq })
		p.mu.Unlock()
	}
	for a, d := range doubts {
		free := false
		err := retry.Do(ctx, func(ctx context.Context) error {
			// Abort first, so that the write cannot land after the delete;
			// then the key goes if it holds this write (its value names the
			// request), whether the record says applied or has expired.
			if _, err := s.abort(ctx, d.rq, nil); err != nil {
				return err
			}
			ok, _, err := s.kv.Txn(ctx, []store.Cond{store.IfValue(d.key, d.val)}, store.Delete(d.key))
			if err != nil {
				return err
			}
			if ok {
				free = true
				return nil
			}
			_, found, err := s.kv.Get(ctx, d.key)
			free = !found
			return err
		})
		if err != nil {
			return // etcd still away: later
		}
		p.mu.Lock()
		delete(p.doubt, a)
		if b := p.ownBlock(a); b != nil {
			if d.counted {
				b.own = max(b.own-1, 0)
			}
			if free && a != p.gw {
				b.a.Release(a)
				b.full = false
			}
		}
		p.mu.Unlock()
		s.log.Info("global address space: settled an address write of unknown outcome", "pool", p.id, "address", a, "freed", free)
	}
}

func (s *globalSpace) ReleaseAddress(ctx context.Context, poolID string, a netip.Addr) error {
	p, err := s.pool(ctx, poolID)
	if err != nil {
		return err
	}
	if !p.rec.Pool.Contains(a) {
		return nil // never allocated here
	}
	s.resolveDoubts(ctx, p)
	return s.releaseAddr(ctx, p, a)
}

// releaseAddr frees a, or this host's hold of a gateway or aux address.
func (s *globalSpace) releaseAddr(ctx context.Context, p *gPool, a netip.Addr) error {
	poolID := p.id
	key := p.addrKey(s, a)
	rq := newRequest()
	type released struct{ Gone, Mine bool }
	for range maxCAS {
		var gone, mine bool
		err := s.do(ctx, func(ctx context.Context) error {
			var done released
			if ok, err := s.applied(ctx, rq, &done); err != nil || ok {
				gone, mine = done.Gone, done.Mine
				return err
			}
			kv, found, err := s.kv.Get(ctx, key)
			if err != nil {
				return err
			}
			if !found {
				gone = true
				return nil
			}
			var rec gAddrRecord
			if err := json.Unmarshal(kv.Value, &rec); err != nil {
				return fmt.Errorf("address %s: %w", a, err)
			}
			cmp := []store.Cond{store.IfUnchanged(key, kv.ModRev)}
			var res released
			var op store.Op
			if rec.Gateway || rec.Aux {
				if rec.Hosts[s.host] <= 0 {
					return nil // not held by this host: harmless
				}
				rec.Hosts = liveCounts(rec.Hosts)
				if rec.Hosts[s.host]--; rec.Hosts[s.host] == 0 {
					delete(rec.Hosts, s.host)
				}
				if len(rec.Hosts) == 0 {
					res.Gone, op = true, store.Delete(key)
				} else {
					op = store.Put(key, mustJSON(rec), 0)
				}
			} else {
				if rec.Host != s.host {
					return plugin.Conflict("global address space: pool %s: address %s is held by host %s (endpoint %q), not by %s; not released",
						poolID, a, rec.Host, rec.Endpoint, s.host)
				}
				res, op = released{Gone: true, Mine: true}, store.Delete(key)
			}
			ok, _, err := s.txnOnce(ctx, rq, "release address", res, cmp, op)
			if err != nil {
				return err
			}
			if !ok {
				return errCASConflict
			}
			gone, mine = res.Gone, res.Mine
			return nil
		})
		if errors.Is(err, errCASConflict) {
			continue
		}
		if err != nil {
			return s.storeErr("release address "+a.String(), err)
		}
		if gone {
			s.freeLocal(ctx, p, a, mine)
		}
		return nil
	}
	return plugin.Errorf(503, "global address space: pool %s: release %s: too much contention, try again", poolID, a)
}

// freeLocal frees a in this host's block and gives the block back when it
// holds no other address of this host (mine: a was this host's).
func (s *globalSpace) freeLocal(ctx context.Context, p *gPool, a netip.Addr, mine bool) {
	p.mu.Lock()
	b := p.free(a, mine)
	p.mu.Unlock()
	if b == nil {
		return
	}
	// None of this host's addresses left, none in flight: give it back.
	// Other hosts' addresses may remain; the next owner reads them.
	err := s.do(ctx, func(ctx context.Context) error {
		_, _, err := s.kv.Txn(ctx, []store.Cond{store.IfCreated(b.key, b.rev)}, store.Delete(b.key))
		return err
	})
	if err != nil {
		s.log.Warn("global address space: give back block", "pool", p.id, "block", b.pfx, "err", err)
		p.mu.Lock()
		if p.ownBlock(b.start) == nil {
			p.addBlock(b)
		}
		p.mu.Unlock()
		return
	}
	s.log.Debug("global block given back", "pool", p.id, "block", b.pfx, "host", s.host)
}
