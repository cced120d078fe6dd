package driver

// Hosts of the global space hold a lease: hosts/<host ID> exists while the
// host's plugin runs (kept alive; it goes DefaultHostTTL after the plugin
// stopped or lost etcd). The blocks of a host without that key that hold no
// address are provably unused: no address record says anything is
// allocated there, and the owner, if it comes back, fails every allocation
// in a block whose key was recreated or deleted (its transactions compare
// the block's create revision) and claims again. collect frees them: when
// a host finds no unclaimed block left in a pool, and on `dockplug ipam gc
// --apply`.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/store"
)

// DefaultHostTTL is the lease of a host's key.
const DefaultHostTTL = 30 * time.Second

// gHostRecord is a live host at hosts/<host ID>.
type gHostRecord struct {
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
}

func (s *globalSpace) hostKey(host string) string { return s.prefix + "hosts/" + host }

// registerHost writes this host's key with a new lease and returns the
// lease.
func (s *globalSpace) registerHost(ctx context.Context) (store.LeaseID, error) {
	var id store.LeaseID
	err := s.do(ctx, func(ctx context.Context) (err error) {
		if id, err = s.kv.Grant(ctx, s.cfg.HostTTL); err != nil {
			return err
		}
		rec := gHostRecord{Host: s.host, Since: time.Now().UTC()}
		_, _, err = s.kv.Txn(ctx, nil, store.Put(s.hostKey(s.host), mustJSON(rec), id))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("register host %s: %w", s.host, err)
	}
	return id, nil
}

// keepHost keeps this host's lease alive until ctx ends, registering
// again when the lease was lost (etcd away for longer than its TTL).
func (s *globalSpace) keepHost(ctx context.Context, id store.LeaseID) {
	defer close(s.hostDone)
	for {
		lost, err := s.kv.KeepAlive(ctx, id)
		if err == nil {
			select {
			case <-lost:
			case <-ctx.Done():
				return
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			if id, err = s.registerHost(ctx); err == nil {
				break
			}
			s.log.Warn("global address space: host lease", "host", s.host, "err", err)
		}
	}
}

// GCBlock is a block of a host without a lease, as `dockplug ipam gc`
// reports it.
type GCBlock struct {
	Pool      string       `json:"pool"`
	Block     netip.Prefix `json:"block"`
	Host      string       `json:"host"`
	Addresses int          `json:"addresses"`       // allocated in the block
	Freed     bool         `json:"freed,omitempty"` // freed (with apply)
	Reason    string       `json:"reason"`          // why it is kept or free
}

// Collector frees what is provably unused in a shared address space.
type Collector interface {
	// Collect lists the blocks of hosts without a lease and, if apply,
	// frees those that hold no address.
	Collect(ctx context.Context, apply bool) ([]GCBlock, error)
}

var _ Collector = (*globalSpace)(nil)

func (s *globalSpace) Collect(ctx context.Context, apply bool) ([]GCBlock, error) {
	var out []GCBlock
	err := s.do(ctx, func(ctx context.Context) (err error) {
		out, err = s.collect(ctx, "", apply)
		return err
	})
	if err != nil {
		return nil, s.storeErr("collect unused blocks", err)
	}
	return out, nil
}

// collect is Collect for the pool seg ("": every pool).
func (s *globalSpace) collect(ctx context.Context, seg string, apply bool) ([]GCBlock, error) {
	hosts, rev, err := s.listPrefix(ctx, s.prefix+"hosts/", 0)
	if err != nil {
		return nil, err
	}
	alive := map[string]bool{}
	for _, kv := range hosts {
		alive[strings.TrimPrefix(kv.Key, s.prefix+"hosts/")] = true
	}
	bdir, adir := s.prefix+"blocks/", s.prefix+"addrs/"
	if seg != "" {
		bdir, adir = s.blockDir(seg), s.addrDir(seg)
	}
	blocks, _, err := s.listPrefix(ctx, bdir, rev)
	if err != nil {
		return nil, err
	}
	var out []GCBlock
	var addrKeys []string // sorted, read once if needed
	for _, kv := range blocks {
		var br gBlockRecord
		if json.Unmarshal(kv.Value, &br) != nil || alive[br.Host] || !br.Block.IsValid() {
			continue
		}
		pseg, _, _ := strings.Cut(strings.TrimPrefix(kv.Key, s.prefix+"blocks/"), "/")
		if addrKeys == nil {
			addrs, _, err := s.listPrefix(ctx, adir, rev)
			if err != nil {
				return nil, err
			}
			addrKeys = make([]string, len(addrs))
			for i, a := range addrs {
				addrKeys[i] = a.Key
			}
		}
		from := s.addrDir(pseg) + hexAddr(br.Block.Addr())
		to := s.addrDir(pseg) + hexAddr(alloc.LastAddr(br.Block)) + "\x00"
		lo := sort.SearchStrings(addrKeys, from)
		hi := sort.SearchStrings(addrKeys, to)
		g := GCBlock{Pool: strings.ReplaceAll(pseg, "_", "/"), Block: br.Block, Host: br.Host, Addresses: hi - lo}
		if g.Addresses > 0 {
			g.Reason = fmt.Sprintf("host %s holds no lease, but %d addresses are allocated in the block", br.Host, g.Addresses)
			out = append(out, g)
			continue
		}
		g.Reason = fmt.Sprintf("host %s holds no lease and no address is allocated in the block", br.Host)
		if apply {
			// Only if nothing changed since the read: the block is the
			// same, its host still gone, no address written in it.
			ok, _, err := s.kv.Txn(ctx, []store.Cond{
				store.IfUnchanged(kv.Key, kv.ModRev),
				store.IfAbsent(s.hostKey(br.Host)),
				store.IfRangeUnchangedSince(from, to, rev),
			}, store.Delete(kv.Key))
			if err != nil {
				return nil, err
			}
			g.Freed = ok
			if !ok {
				g.Reason = "changed while collecting; kept"
			}
		}
		out = append(out, g)
	}
	return out, nil
}
