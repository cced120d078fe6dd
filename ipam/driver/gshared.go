package driver

// Addresses shared by the hosts of a global pool, refcounted by host: the
// gateway, and aux addresses (--aux-address: a preferred address requested
// without an endpoint name, as dockerd does when it creates a network on
// each host).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store"
	"github.com/dockplug/dockplug/store/etcd"
)

// doubtShared remembers a gateway or aux request that failed after a
// transaction was sent: it may have been applied, and is settled later.
func (s *globalSpace) doubtShared(p *gPool, rq *request) {
	if !rq.sent {
		return
	}
	p.mu.Lock()
	p.shared = append(p.shared, rq)
	p.mu.Unlock()
}

// settleShared aborts a gateway or aux request of unknown outcome and, if
// it was applied, releases the hold it took. (Settled after its record
// expired, a hold it took is not found, and stays.)
func (s *globalSpace) settleShared(ctx context.Context, p *gPool, rq *request, retry etcd.Retry) error {
	var a netip.Addr
	var applied bool
	err := retry.Do(ctx, func(ctx context.Context) (err error) {
		applied, err = s.abort(ctx, rq, &a)
		return err
	})
	if err != nil || !applied {
		return err
	}
	if err := s.releaseAddr(ctx, p, a); err != nil {
		return fmt.Errorf("undo the hold of %s: %w", a, err)
	}
	s.log.Info("global address space: undid a gateway or aux hold whose caller was told it failed", "pool", p.id, "address", a)
	return nil
}

// requestAux takes the aux address req.Address for this host: created if
// nobody holds it, else one more holder if it is an aux address of other
// hosts. It refuses an address an endpoint or the gateway holds, and one
// this host holds already.
func (s *globalSpace) requestAux(ctx context.Context, p *gPool, req AddrRequest) (netip.Addr, error) {
	a := req.Address
	if err := checkAddr(p, a); err != nil {
		return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: %w", p.id, err))
	}
	key := p.addrKey(s, a)
	rq := newRequest()
	for range maxCAS {
		err := s.do(ctx, func(ctx context.Context) error {
			if ok, err := s.applied(ctx, rq, nil); err != nil || ok {
				return err
			}
			kv, found, err := s.kv.Get(ctx, key)
			if err != nil {
				return err
			}
			var ar gAddrRecord
			cond := store.IfAbsent(key)
			if found {
				if err := json.Unmarshal(kv.Value, &ar); err != nil {
					return fmt.Errorf("address %s: %w", a, err)
				}
				if !ar.Aux {
					return fmt.Errorf("%w: %s", alloc.ErrInUse, holder(a, &ar))
				}
				// A host holds a pool once, so it asks for an aux address
				// once: a second request is another caller (a container's
				// --ip from a daemon that names no endpoint).
				if ar.Hosts[s.host] > 0 {
					return fmt.Errorf("%w: %s, already held on host %s", alloc.ErrInUse, holder(a, &ar), s.host)
				}
				ar.Hosts = liveCounts(ar.Hosts)
				ar.Hosts[s.host]++
				cond = store.IfUnchanged(key, kv.ModRev)
			} else {
				ar = s.newAddrRecord(req, a, rq.nonce)
				ar.Aux, ar.Hosts = true, map[string]int{s.host: 1}
			}
			ok, _, err := s.txnOnce(ctx, rq, "request aux address", a,
				[]store.Cond{cond, store.IfCreated(p.key, p.createRev)}, store.Put(key, mustJSON(ar), 0))
			if err != nil {
				return err
			}
			if !ok {
				if pk, found, err := s.kv.Get(ctx, p.key); err != nil {
					return err
				} else if !found || pk.CreateRev != p.createRev {
					return errPoolGone
				}
				return errCASConflict
			}
			return nil
		})
		switch {
		case errors.Is(err, errCASConflict):
			continue
		case errors.Is(err, errPoolGone):
			return netip.Addr{}, err
		case errors.Is(err, alloc.ErrInUse):
			p.markUsed(a, false)
			return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: %w", p.id, err))
		case err != nil:
			s.doubtShared(p, rq)
			return netip.Addr{}, s.storeErr("request aux address "+a.String(), err)
		}
		p.markUsed(a, false)
		return a, nil
	}
	return netip.Addr{}, plugin.Errorf(503, "global address space: pool %s: aux address %s: too much contention, try again", p.id, a)
}

// requestGateway returns the pool's gateway, the same on every host,
// recording the pool's gateway on the first request and counting holders.
func (s *globalSpace) requestGateway(ctx context.Context, p *gPool, req AddrRequest) (netip.Addr, error) {
	if req.Address.IsValid() {
		if err := checkAddr(p, req.Address); err != nil {
			return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: gateway: %w", p.id, err))
		}
	}
	rq := newRequest()
	var fallback netip.Addr // when the default gateway address is taken
	for range maxCAS {
		var gw netip.Addr
		err := s.do(ctx, func(ctx context.Context) error {
			if ok, err := s.applied(ctx, rq, &gw); err != nil || ok {
				return err
			}
			pkv, found, err := s.kv.Get(ctx, p.key)
			if err != nil {
				return err
			}
			if !found || pkv.CreateRev != p.createRev {
				return errPoolGone
			}
			var rec gPoolRecord
			if err := json.Unmarshal(pkv.Value, &rec); err != nil {
				return fmt.Errorf("pool %s: %w", p.id, err)
			}
			want, setPool := rec.Gateway, false
			switch {
			case !want.IsValid() && req.Address.IsValid():
				want, setPool = req.Address, true
			case !want.IsValid():
				p.mu.Lock()
				want, setPool = p.gw, true
				p.mu.Unlock()
				if fallback.IsValid() {
					want = fallback
				}
			}
			if !want.IsValid() {
				return fmt.Errorf("%w: no address for a gateway in %s", alloc.ErrPoolExhausted, p.rng)
			}
			key := p.addrKey(s, want)
			akv, found, err := s.kv.Get(ctx, key)
			if err != nil {
				return err
			}
			var ar gAddrRecord
			var amod int64
			if found {
				amod = akv.ModRev
				if err := json.Unmarshal(akv.Value, &ar); err != nil {
					return fmt.Errorf("address %s: %w", want, err)
				}
			}
			if req.Address.IsValid() && req.Address != want {
				if amod != 0 {
					return plugin.Conflict("global address space: pool %s already has gateway %s (held by %s); cannot use %s",
						p.id, want, strings.Join(slices.Sorted(mapKeys(ar.Hosts)), ", "), req.Address)
				}
				// Nobody holds the recorded gateway: this one replaces it.
				want, setPool = req.Address, true
				key = p.addrKey(s, want)
				if akv, found, err = s.kv.Get(ctx, key); err != nil {
					return err
				}
				ar, amod = gAddrRecord{}, 0
				if found {
					amod = akv.ModRev
					json.Unmarshal(akv.Value, &ar)
				}
			}
			if amod != 0 && !ar.Gateway {
				if setPool && !req.Address.IsValid() {
					return errGatewayTaken{want}
				}
				return fmt.Errorf("%w: %s cannot be the gateway", alloc.ErrInUse, holder(want, &ar))
			}
			var cmps []store.Cond
			var ops []store.Op
			if amod == 0 {
				ar = s.newAddrRecord(AddrRequest{Gateway: true, Endpoint: req.Endpoint, MAC: req.MAC}, want, rq.nonce)
				ar.Hosts = map[string]int{s.host: 1}
				cmps = append(cmps, store.IfAbsent(key))
			} else {
				ar.Hosts = liveCounts(ar.Hosts)
				ar.Hosts[s.host]++
				cmps = append(cmps, store.IfUnchanged(key, amod))
			}
			ops = append(ops, store.Put(key, mustJSON(ar), 0))
			if setPool {
				rec.Gateway = want
				cmps = append(cmps, store.IfUnchanged(p.key, pkv.ModRev))
				ops = append(ops, store.Put(p.key, mustJSON(rec), 0))
			} else {
				cmps = append(cmps, store.IfCreated(p.key, p.createRev))
			}
			ok, _, err := s.txnOnce(ctx, rq, "request gateway", want, cmps, ops...)
			if err != nil {
				return err
			}
			if !ok {
				return errCASConflict
			}
			gw = want
			return nil
		})
		var taken errGatewayTaken
		switch {
		case errors.Is(err, errCASConflict):
			continue
		case errors.As(err, &taken):
			// The first address was taken as a preferred address before
			// the gateway was asked for: the first free one instead.
			if fallback, err = s.firstFree(ctx, p); err != nil {
				return netip.Addr{}, err
			}
			continue
		case errors.Is(err, errPoolGone):
			return netip.Addr{}, err
		case err != nil:
			var pe *plugin.Error
			if errors.As(err, &pe) {
				return netip.Addr{}, err
			}
			if errors.Is(err, alloc.ErrInUse) || errors.Is(err, alloc.ErrPoolExhausted) {
				return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: %w", p.id, err))
			}
			s.doubtShared(p, rq)
			return netip.Addr{}, s.storeErr("request gateway", err)
		}
		// An explicit gateway: the default one is free for endpoints (if a
		// host took it meanwhile, etcd says so).
		p.mu.Lock()
		p.setGateway(gw)
		p.mu.Unlock()
		return gw, nil
	}
	return netip.Addr{}, plugin.Errorf(503, "global address space: pool %s: gateway: too much contention, try again", p.id)
}

type errGatewayTaken struct{ a netip.Addr }

func (e errGatewayTaken) Error() string { return "gateway " + e.a.String() + " taken" }

// firstFree is the lowest address of the allocation range without a key.
func (s *globalSpace) firstFree(ctx context.Context, p *gPool) (netip.Addr, error) {
	a, err := s.poolAllocator(ctx, p, "request gateway")
	if err != nil {
		return netip.Addr{}, err
	}
	first, err := a.Allocate()
	if err != nil {
		return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: gateway: %w", p.id, err))
	}
	return first, nil
}
