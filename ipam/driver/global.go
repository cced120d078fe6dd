package driver

// The global address space: pools and addresses kept in etcd, shared by
// every host (plugin instance) that points at the same cluster and prefix.
//
// # Files
//
//	global.go   configuration, the space, listing
//	gkeys.go    the key schema and records
//	gpool.go    pools: request, release, this host's view of one
//	gaddr.go    addresses: the transactions that hand them out and free them
//	gshared.go  addresses shared by hosts, refcounted: gateway, aux addresses
//	gonce.go    request records: exactly-once retries
//	ghosts.go   host leases, and freeing the empty blocks of hosts gone
//	blocks.go   the pure block allocator (no store): owned blocks, picks
//
// Every read and transaction goes through store.KV (store/etcd over etcd),
// the small transactional interface of store/.
//
// # Keys (under GlobalConfig.Prefix, default "/dockplug/ipam/")
//
//	pools/<cidr>                 gPoolRecord as JSON ("/" in the CIDR as "_",
//	                             e.g. pools/10.0.0.0_24): sub-pool, gateway,
//	                             hosts (host ID -> count), block size
//	blocks/<cidr>/<hex start>    gBlockRecord: the host that owns the block
//	addrs/<cidr>/<hex address>   gAddrRecord: endpoint, host, MAC, time
//
// Addresses and block starts are fixed-width hex (8 digits for IPv4, 32 for
// IPv6), so key order is address order and a block's addresses are one key
// range.
//
// # Why an address is never handed out twice
//
// An address is allocated by one transaction that creates its key only if
// it does not exist (CreateRevision == 0). etcd serialises transactions, so
// of two hosts (or goroutines) creating the same address exactly one
// succeeds; the other sees the key and picks another. The in-memory
// allocators only choose candidates; etcd decides.
//
// # Why no allocation is lost
//
// RequestAddress returns only after the transaction that created the key is
// committed. A transaction whose outcome is unknown (etcd went away
// mid-request) is retried, exactly once in effect: every changing
// transaction also creates the request's record reqs/<nonce> if absent
// (gonce.go), so a retry that finds the record knows the first attempt
// succeeded, whatever other hosts changed in between, and a retry that
// does not find it cannot be applied in addition to a late first attempt.
// If the call gives up, it fails, the address stays marked used in memory,
// and the change is settled later (resolveDoubts): the request is aborted,
// its record created marked so, which no late attempt can get past, and if
// it had been applied it is undone (the key deleted if it still holds what
// this call wrote, a gateway or aux hold released).
//
// # Why there is no hot key
//
// Each host claims blocks of 2^BlockBits addresses of a pool (one
// create-if-absent transaction per block) and allocates inside its own
// blocks with a local alloc.Allocator per block. Each allocation writes only
// its own address key; its transaction also compares the block's and the
// pool's create revisions (reads, which never conflict), so that a host
// never allocates in a block it lost or in a pool that was deleted. Hosts
// contend only when they claim a block, once per 2^BlockBits allocations.
// When no unclaimed block is left, a host takes free addresses anywhere in
// the pool, from a fresh read of the address keys (the slow path near
// exhaustion). Preferred addresses are created directly, whatever block
// they fall in; a block owner that later picks one gets a conflict, marks it
// used and picks again.
//
// # Gateway
//
// The pool record names the gateway: the first address of the allocation
// range unless one was requested. Every host's gateway request returns that
// address; the gateway's key counts its holders per host, and the key goes
// only when the last host releases it. Block allocators never hand it out.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store"
	"github.com/dockplug/dockplug/store/etcd"
)

// DefaultGlobalPrefix is where the global space keeps its keys.
const DefaultGlobalPrefix = "/dockplug/ipam/"

// DefaultBlockBits: hosts claim blocks of 64 addresses (as Calico's /26
// blocks). One claim transaction per 64 allocations is under 2% of the
// writes, a host holding few addresses holds one block, and a /16 has 1024
// blocks for as many hosts. Small pools get smaller blocks so that each
// pool has at least 16 (a /24 overlay: blocks of 16 for 16 hosts).
const DefaultBlockBits = 6

// maxBlockBits bounds GlobalConfig.BlockBits (blocks of 2^32 addresses).
const maxBlockBits = 32

// GlobalConfig configures the global address space.
type GlobalConfig struct {
	// Client is the etcd client (see store/etcd.Dial); Close closes it
	// unless KeepClient is set.
	Client     *clientv3.Client
	KeepClient bool
	// Prefix is the key prefix; default DefaultGlobalPrefix.
	Prefix string
	// HostID names this host in pools, blocks and addresses; required,
	// and stable across restarts (the driver's host ID).
	HostID string
	// DefaultPools are the dynamic pools; nil: docker's global default,
	// 10.0.0.0/8 split in /24s. Every host should use the same list.
	DefaultPools []alloc.PoolSpec
	// BlockBits: hosts claim blocks of 2^BlockBits addresses; 0:
	// DefaultBlockBits. A pool keeps the block size it was created with.
	BlockBits int
	// Retry bounds each etcd operation (zero: store/etcd's defaults, 5s
	// per attempt and 30s in all).
	Retry etcd.Retry
	// HostTTL is the lease of the host's key hosts/<HostID>; 0:
	// DefaultHostTTL. Blocks of a host whose key expired and that hold no
	// address are freed (ghosts.go).
	HostTTL time.Duration
	Logger  *slog.Logger
}

// NewGlobalSpace returns the global address space over etcd. It checks that
// etcd answers; pools are loaded from etcd when first used, so a restarted
// host (same HostID) finds its blocks and addresses again.
func NewGlobalSpace(ctx context.Context, cfg GlobalConfig) (Space, error) {
	if cfg.Client == nil {
		return nil, errors.New("global address space: no etcd client")
	}
	if cfg.HostID == "" {
		return nil, errors.New("global address space: no host ID")
	}
	if strings.Contains(cfg.HostID, "\n") {
		return nil, fmt.Errorf("global address space: bad host ID %q", cfg.HostID)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultGlobalPrefix
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if cfg.BlockBits == 0 {
		cfg.BlockBits = DefaultBlockBits
	}
	if cfg.BlockBits < 0 || cfg.BlockBits > maxBlockBits {
		return nil, fmt.Errorf("global address space: block bits %d out of range 1..%d", cfg.BlockBits, maxBlockBits)
	}
	if cfg.DefaultPools == nil {
		cfg.DefaultPools = alloc.DockerGlobalDefaultPools()
	}
	if _, err := alloc.NewPoolAllocator(cfg.DefaultPools); err != nil {
		return nil, fmt.Errorf("global address space: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HostTTL <= 0 {
		cfg.HostTTL = DefaultHostTTL
	}
	s := &globalSpace{cfg: cfg, cli: cfg.Client, kv: etcd.NewKV(cfg.Client), prefix: cfg.Prefix, host: cfg.HostID,
		log: cfg.Logger, pools: map[string]*gPool{}}
	err := s.do(ctx, func(ctx context.Context) error {
		_, err := s.kv.Count(ctx, s.prefix+"pools/", store.PrefixEnd(s.prefix+"pools/"))
		return err
	})
	if err != nil {
		return nil, s.storeErr("connect", err)
	}
	lease, err := s.registerHost(ctx)
	if err != nil {
		return nil, s.storeErr("connect", err)
	}
	hctx, cancel := context.WithCancel(context.Background())
	s.stopHost, s.hostDone = cancel, make(chan struct{})
	go s.keepHost(hctx, lease)
	return s, nil
}

type globalSpace struct {
	cfg    GlobalConfig
	cli    *clientv3.Client
	kv     store.KV
	prefix string
	host   string
	log    *slog.Logger

	mu     sync.Mutex
	pools  map[string]*gPool // by pool ID: this host's view of pools in use
	leases reqLeases         // for request records (gonce.go)

	stopHost func()        // stops keeping the host's lease (ghosts.go)
	hostDone chan struct{} // closed when it stopped
}

// gPool is this host's view of one pool: its record and, in blockAlloc
// (under mu), the blocks it owns.
type gPool struct {
	id        string
	key       string // pools/<cidr>
	seg       string // <cidr> as in keys
	createRev int64  // of the pool key: a recreated pool is another pool
	rec       gPoolRecord
	rng       netip.Prefix // allocation range: sub-pool or pool
	bb        int          // block bits

	claimMu sync.Mutex // one block claim at a time

	mu sync.Mutex
	blockAlloc
	doubt    map[netip.Addr]gDoubt
	shared   []*request // gateway and aux requests of unknown outcome (gshared.go)
	doubtTry time.Time  // last attempt to settle doubts
}

// gDoubt is an address write whose outcome is unknown.
type gDoubt struct {
	key     string
	val     []byte
	counted bool // in its block's own count
	rq      *request
}

var errCASConflict = errors.New("concurrent change")

// maxCAS bounds the optimistic-concurrency loops; each iteration means
// another writer won, so reaching it takes heavy contention.
const maxCAS = 200

func (s *globalSpace) Close() error {
	s.stopHost()
	<-s.hostDone
	if s.cfg.KeepClient {
		return nil
	}
	return s.cli.Close()
}

// do runs one store operation with retries on transient errors.
func (s *globalSpace) do(ctx context.Context, fn func(ctx context.Context) error) error {
	return s.cfg.Retry.Do(ctx, fn)
}

// storeErr wraps a store error: 503 when etcd did not answer.
func (s *globalSpace) storeErr(what string, err error) error {
	var pe *plugin.Error
	if errors.As(err, &pe) {
		return err
	}
	if errors.Is(err, etcd.ErrUnavailable) || etcd.IsTransient(err) || errors.Is(err, context.DeadlineExceeded) {
		return &plugin.Error{Status: 503, Msg: fmt.Sprintf("global address space: %s: etcd did not answer", what), Err: err}
	}
	return fmt.Errorf("global address space: %s: %w", what, err)
}

func (s *globalSpace) Pools(ctx context.Context) ([]PoolInfo, error) {
	var out []PoolInfo
	err := s.do(ctx, func(ctx context.Context) error {
		pools, _, err := s.readPools(ctx)
		if err != nil {
			return err
		}
		out = make([]PoolInfo, 0, len(pools))
		for _, p := range pools {
			dir := s.addrDir(cidrSeg(p.rec.Pool))
			n, err := s.kv.Count(ctx, dir, store.PrefixEnd(dir))
			if err != nil {
				return err
			}
			info := p.rec.info()
			info.Allocated = uint64(n)
			out = append(out, info)
		}
		return nil
	})
	if err != nil {
		return nil, s.storeErr("list pools", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *globalSpace) Addresses(ctx context.Context, poolID string) ([]AddrInfo, error) {
	pool, _, err := parsePoolID(poolID)
	if err != nil {
		return nil, err
	}
	seg := cidrSeg(pool)
	var out []AddrInfo
	err = s.do(ctx, func(ctx context.Context) error {
		// The pool and its addresses at one revision.
		pk, rev, err := s.kv.List(ctx, s.poolKey(seg), s.poolKey(seg)+"\x00", 0)
		if err != nil {
			return err
		}
		var rec gPoolRecord
		if len(pk) == 0 || json.Unmarshal(pk[0].Value, &rec) != nil || rec.ID != poolID {
			return plugin.NotFound("global address space: no pool %s", poolID)
		}
		kvs, _, err := s.listPrefix(ctx, s.addrDir(seg), rev)
		if err != nil {
			return err
		}
		out = make([]AddrInfo, 0, len(kvs))
		for _, kv := range kvs {
			var ar gAddrRecord
			if err := json.Unmarshal(kv.Value, &ar); err != nil {
				s.log.Warn("global address space: unreadable address record", "key", kv.Key, "err", err)
				continue
			}
			if (ar.Gateway || ar.Aux) && len(ar.Hosts) > 0 {
				ar.Host = strings.Join(slices.Sorted(mapKeys(ar.Hosts)), ",")
			}
			out = append(out, ar.AddrInfo)
		}
		return nil
	})
	if err != nil {
		return nil, s.storeErr("list addresses of "+poolID, err)
	}
	return out, nil
}

// String describes the space for logs.
func (s *globalSpace) String() string {
	return "global address space (etcd " + strings.Join(s.cli.Endpoints(), ",") + ", prefix " + s.prefix + ", host " + s.host + ", blocks of 2^" + strconv.Itoa(s.cfg.BlockBits) + ")"
}
