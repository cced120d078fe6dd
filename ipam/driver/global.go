package driver

// The global address space: pools and addresses kept in etcd, shared by
// every host (plugin instance) that points at the same cluster and prefix.
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
// mid-request) is retried; the key's value carries a nonce, so a retry that
// finds the key with its own nonce knows the first attempt succeeded. If it
// cannot find out, the call fails, the address stays marked used in memory
// and the key is deleted later if, and only if, it still holds that nonce.
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
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
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

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
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
	Retry  etcd.Retry
	Logger *slog.Logger
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
	s := &globalSpace{cfg: cfg, cli: cfg.Client, prefix: cfg.Prefix, host: cfg.HostID,
		log: cfg.Logger, pools: map[string]*gPool{}}
	err := s.do(ctx, func(ctx context.Context) error {
		_, err := s.cli.Get(ctx, s.prefix+"pools/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err
	})
	if err != nil {
		return nil, s.storeErr("connect", err)
	}
	return s, nil
}

type globalSpace struct {
	cfg    GlobalConfig
	cli    *clientv3.Client
	prefix string
	host   string
	log    *slog.Logger

	mu    sync.Mutex
	pools map[string]*gPool // by pool ID: this host's view of pools in use
}

// gPoolRecord is a pool as stored at pools/<cidr>.
type gPoolRecord struct {
	ID        string            `json:"id"`
	Pool      netip.Prefix      `json:"pool"`
	SubPool   netip.Prefix      `json:"subPool,omitzero"`
	Dynamic   bool              `json:"dynamic,omitempty"`
	Gateway   netip.Addr        `json:"gateway,omitzero"`
	Hosts     map[string]int    `json:"hosts"`
	BlockBits int               `json:"blockBits"`
	CreatedAt time.Time         `json:"createdAt"`
	Options   map[string]string `json:"options,omitempty"`
	// Ops are the nonces of the last changes, so that a retried change
	// recognises its own earlier success.
	Ops []string `json:"ops,omitempty"`
}

// gBlockRecord is a block as stored at blocks/<cidr>/<start>.
type gBlockRecord struct {
	Host  string       `json:"host"`
	Block netip.Prefix `json:"block"`
	At    time.Time    `json:"at"`
	Nonce string       `json:"nonce"`
}

// gAddrRecord is an address as stored at addrs/<cidr>/<address>.
type gAddrRecord struct {
	AddrInfo
	// Hosts counts the holders of a gateway, by host.
	Hosts map[string]int `json:"hosts,omitempty"`
	Ops   []string       `json:"ops,omitempty"`
}

// gPool is this host's view of one pool: its record and the blocks it owns.
type gPool struct {
	id        string
	key       string // pools/<cidr>
	seg       string // <cidr> as in keys
	createRev int64  // of the pool key: a recreated pool is another pool
	rec       gPoolRecord
	rng       netip.Prefix // allocation range: sub-pool or pool
	bb        int          // block bits

	claimMu sync.Mutex // one block claim at a time

	mu       sync.Mutex
	gw       netip.Addr // the gateway address; never handed out dynamically
	blocks   []*gBlock  // owned, by address
	claims   int        // blocks added so far
	serial   netip.Addr
	doubt    map[netip.Addr]gDoubt
	doubtTry time.Time // last attempt to settle doubts
}

type gBlock struct {
	start netip.Addr
	pfx   netip.Prefix
	key   string
	rev   int64 // create revision of the block key
	a     *alloc.Allocator
	own   int        // this host's addresses in the block, in flight included
	full  bool       // Allocate failed since the last release
	last  netip.Addr // last serial allocation, to see the cursor wrap
}

// gDoubt is an address write whose outcome is unknown.
type gDoubt struct {
	key     string
	val     []byte
	counted bool // in its block's own count
}

type mvccKV = mvccpb.KeyValue

var errCASConflict = errors.New("concurrent change")

// maxCAS bounds the optimistic-concurrency loops; each iteration means
// another writer won, so reaching it takes heavy contention.
const maxCAS = 200

func (s *globalSpace) Close() error {
	if s.cfg.KeepClient {
		return nil
	}
	return s.cli.Close()
}

// do runs one etcd operation with retries on transient errors.
func (s *globalSpace) do(ctx context.Context, fn func(ctx context.Context) error) error {
	return s.cfg.Retry.Do(ctx, fn)
}

// storeErr wraps an etcd error: 503 when etcd did not answer.
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

// ---- keys ----

func cidrSeg(p netip.Prefix) string { return strings.ReplaceAll(p.String(), "/", "_") }

func hexAddr(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return hex.EncodeToString(b[:])
	}
	b := a.As16()
	return hex.EncodeToString(b[:])
}

func parseHexAddr(s string) (netip.Addr, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return netip.Addr{}, err
	}
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b)), nil
	case 16:
		return netip.AddrFrom16([16]byte(b)), nil
	}
	return netip.Addr{}, fmt.Errorf("bad address key %q", s)
}

func (s *globalSpace) poolKey(seg string) string             { return s.prefix + "pools/" + seg }
func (s *globalSpace) addrDir(seg string) string             { return s.prefix + "addrs/" + seg + "/" }
func (s *globalSpace) blockDir(seg string) string            { return s.prefix + "blocks/" + seg + "/" }
func (p *gPool) addrKey(s *globalSpace, a netip.Addr) string { return s.addrDir(p.seg) + hexAddr(a) }

// ---- address arithmetic ----

func addrToU(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		b := a.As4()
		return 0, uint64(binary.BigEndian.Uint32(b[:]))
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

func uToAddr(hi, lo uint64, is4 bool) netip.Addr {
	if is4 {
		return netip.AddrFrom4([4]byte{byte(lo >> 24), byte(lo >> 16), byte(lo >> 8), byte(lo)})
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	return netip.AddrFrom16(b)
}

// addAddr returns a+n, false if that leaves the address family.
func addAddr(a netip.Addr, n uint64) (netip.Addr, bool) {
	hi, lo := addrToU(a)
	nlo := lo + n
	if nlo < lo {
		hi++
		if hi == 0 {
			return netip.Addr{}, false
		}
	}
	if a.Is4() && nlo > 0xffffffff {
		return netip.Addr{}, false
	}
	return uToAddr(hi, nlo, a.Is4()), true
}

func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	hi, lo := addrToU(p.Addr())
	host := p.Addr().BitLen() - p.Bits()
	if !p.Addr().Is4() {
		if host >= 64 {
			lo = ^uint64(0)
			hi |= (uint64(1) << (host - 64)) - 1
			if host == 128 {
				hi = ^uint64(0)
			}
		} else {
			lo |= (uint64(1) << host) - 1
		}
		return uToAddr(hi, lo, false)
	}
	lo |= (uint64(1) << host) - 1
	return uToAddr(hi, lo, true)
}

// blockBitsFor is the block size used for allocation range r: the configured
// bits, smaller for small ranges so that a range has at least 16 blocks
// (but blocks of at least 4 addresses).
func blockBitsFor(r netip.Prefix, want int) int {
	host := r.Addr().BitLen() - r.Bits()
	return min(want, host, max(host-4, min(host, 2)))
}

func (p *gPool) blockOf(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen()-p.bb).Masked()
}

// ---- records ----

func newNonce() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func addOp(ops []string, nonce string) []string {
	ops = append(ops, nonce)
	if len(ops) > 8 {
		ops = slices.Clone(ops[len(ops)-8:])
	}
	return ops
}

func (r *gPoolRecord) info() PoolInfo {
	info := PoolInfo{ID: r.ID, Space: GlobalSpace, Pool: r.Pool, SubPool: r.SubPool, Dynamic: r.Dynamic,
		Gateway: r.Gateway, CreatedAt: r.CreatedAt}
	for h, n := range r.Hosts {
		if n > 0 {
			info.Hosts = append(info.Hosts, h)
		}
	}
	sort.Strings(info.Hosts)
	return info
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain data types are marshalled
	}
	return b
}

// parsePoolID splits "global/<pool>[/<sub-pool>]".
func parsePoolID(id string) (pool, sub netip.Prefix, err error) {
	parts := strings.Split(id, "/")
	if parts[0] != GlobalSpace || (len(parts) != 3 && len(parts) != 5) {
		return pool, sub, plugin.BadRequest("malformed pool ID %q of the global address space", id)
	}
	if pool, err = netip.ParsePrefix(parts[1] + "/" + parts[2]); err != nil {
		return pool, sub, plugin.BadRequest("malformed pool ID %q: %v", id, err)
	}
	if len(parts) == 5 {
		if sub, err = netip.ParsePrefix(parts[3] + "/" + parts[4]); err != nil {
			return pool, sub, plugin.BadRequest("malformed pool ID %q: %v", id, err)
		}
	}
	return pool, sub, nil
}

func globalPoolID(pool, sub netip.Prefix) string {
	id := GlobalSpace + "/" + pool.String()
	if sub.IsValid() {
		id += "/" + sub.String()
	}
	return id
}

// ---- pools ----

type storedPool struct {
	rec       gPoolRecord
	key       string
	modRev    int64
	createRev int64
}

func (s *globalSpace) readPools(ctx context.Context) ([]storedPool, int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix+"pools/", clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	out := make([]storedPool, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec gPoolRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			s.log.Warn("global address space: unreadable pool record", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, storedPool{rec: rec, key: string(kv.Key), modRev: kv.ModRevision, createRev: kv.CreateRevision})
	}
	return out, resp.Header.Revision, nil
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
	nonce := newNonce()
	for range maxCAS {
		var info PoolInfo
		err := s.do(ctx, func(ctx context.Context) (err error) {
			info, err = s.requestPoolOnce(ctx, req, nonce)
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

func (s *globalSpace) requestPoolOnce(ctx context.Context, req PoolRequest, nonce string) (PoolInfo, error) {
	pools, rev, err := s.readPools(ctx)
	if err != nil {
		return PoolInfo{}, err
	}
	// A retry after an attempt whose outcome was unknown: done already?
	for _, p := range pools {
		if slices.Contains(p.rec.Ops, nonce) {
			return p.rec.info(), nil
		}
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
			// host's own request was recognised by its nonce above.)
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
			rec.Ops = addOp(rec.Ops, nonce)
			resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(p.key), "=", p.modRev)).
				Then(clientv3.OpPut(p.key, string(mustJSON(rec)))).Commit()
			if err != nil {
				return PoolInfo{}, err
			}
			if !resp.Succeeded {
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
		CreatedAt: time.Now().UTC(), Options: req.Options, Ops: []string{nonce}}
	key := s.poolKey(cidrSeg(pool))
	// Create the pool only if no pool was created or changed since the read
	// that found no overlap: two hosts cannot create overlapping pools.
	resp, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		clientv3.Compare(clientv3.ModRevision(s.prefix+"pools/"), "<", rev+1).WithPrefix(),
	).Then(clientv3.OpPut(key, string(mustJSON(rec)))).Commit()
	if err != nil {
		return PoolInfo{}, err
	}
	if !resp.Succeeded {
		return PoolInfo{}, errCASConflict
	}
	return rec.info(), nil
}

func cmpPrefix(p netip.Prefix) string {
	if !p.IsValid() {
		return "(none)"
	}
	return p.String()
}

func liveCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m)+1)
	for k, v := range m {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}

func (s *globalSpace) ReleasePool(ctx context.Context, poolID string) error {
	pool, _, err := parsePoolID(poolID)
	if err != nil {
		return err
	}
	key := s.poolKey(cidrSeg(pool))
	seg := cidrSeg(pool)
	nonce := newNonce()
	var sentDelete int64 // create revision of the pool we tried to delete
	for range maxCAS {
		var left, deleted bool
		err := s.do(ctx, func(ctx context.Context) error {
			// Each attempt decides afresh: a retry may find another host
			// joined meanwhile and take the update path instead.
			left, deleted = false, false
			deleting := false
			resp, err := s.cli.Get(ctx, key)
			if err != nil {
				return err
			}
			if len(resp.Kvs) == 0 || (sentDelete != 0 && resp.Kvs[0].CreateRevision != sentDelete) {
				if sentDelete != 0 { // our delete went through before the error
					left, deleted = true, true
					return nil
				}
				return plugin.NotFound("global address space: no pool %s", poolID)
			}
			kv := resp.Kvs[0]
			var rec gPoolRecord
			if err := json.Unmarshal(kv.Value, &rec); err != nil {
				return fmt.Errorf("pool %s: %w", poolID, err)
			}
			if rec.ID != poolID {
				return plugin.NotFound("global address space: no pool %s (pool %s is %s)", poolID, pool, rec.ID)
			}
			if slices.Contains(rec.Ops, nonce) {
				left = rec.Hosts[s.host] == 0
				return nil
			}
			if rec.Hosts[s.host] <= 0 {
				return plugin.NotFound("global address space: pool %s is not held by host %s (held by %s)",
					poolID, s.host, strings.Join(rec.info().Hosts, ", "))
			}
			rec.Hosts = liveCounts(rec.Hosts)
			rec.Hosts[s.host]--
			if rec.Hosts[s.host] == 0 {
				delete(rec.Hosts, s.host)
				left = true
			}
			cmp := clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
			var tr *clientv3.TxnResponse
			if len(rec.Hosts) == 0 {
				// The last holder: the pool goes with its blocks and addresses.
				sentDelete, deleting = kv.CreateRevision, true
				tr, err = s.cli.Txn(ctx).If(cmp).Then(
					clientv3.OpDelete(key),
					clientv3.OpDelete(s.addrDir(seg), clientv3.WithPrefix()),
					clientv3.OpDelete(s.blockDir(seg), clientv3.WithPrefix()),
				).Commit()
			} else {
				sentDelete = 0
				rec.Ops = addOp(rec.Ops, nonce)
				tr, err = s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(mustJSON(rec)))).Commit()
			}
			if err != nil {
				return err
			}
			if !tr.Succeeded {
				sentDelete = 0
				return errCASConflict
			}
			deleted = deleting
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
		resp, err := s.cli.Get(ctx, s.blockDir(seg), clientv3.WithPrefix())
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			var br gBlockRecord
			if json.Unmarshal(kv.Value, &br) != nil || br.Host != s.host {
				continue
			}
			_, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
				Then(clientv3.OpDelete(string(kv.Key))).Commit()
			if err != nil {
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
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, plugin.NotFound("global address space: no pool %s", poolID)
	}
	rev := resp.Header.Revision
	var rec gPoolRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return nil, fmt.Errorf("pool %s: %w", poolID, err)
	}
	if rec.ID != poolID {
		return nil, plugin.NotFound("global address space: no pool %s (pool %s is %s)", poolID, poolPfx, rec.ID)
	}
	p := &gPool{id: poolID, key: key, seg: seg, createRev: resp.Kvs[0].CreateRevision, rec: rec,
		rng: rec.Pool, bb: rec.BlockBits, doubt: map[netip.Addr]gDoubt{}}
	if rec.SubPool.IsValid() {
		p.rng = rec.SubPool
	}
	p.gw = rec.Gateway
	if !p.gw.IsValid() {
		// Not requested yet: the first address of the allocation range is
		// kept for it, as docker's IPAM gives it to the first request.
		if a, err := alloc.New(rec.Pool, rec.SubPool); err == nil {
			p.gw, _ = a.Allocate()
		}
	}
	// This host's blocks, and the addresses in them, at the same revision.
	bresp, err := s.cli.Get(ctx, s.blockDir(seg), clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		return nil, err
	}
	var own []*gBlock
	for _, kv := range bresp.Kvs {
		var br gBlockRecord
		if json.Unmarshal(kv.Value, &br) != nil || br.Host != s.host {
			continue
		}
		start, err := parseHexAddr(strings.TrimPrefix(string(kv.Key), s.blockDir(seg)))
		if err != nil || !p.rng.Contains(start) {
			continue
		}
		own = append(own, &gBlock{start: start, pfx: p.blockOf(start), key: string(kv.Key), rev: kv.CreateRevision})
	}
	for chunk := range slices.Chunk(own, 64) {
		ops := make([]clientv3.Op, len(chunk))
		for i, b := range chunk {
			ops[i] = s.blockAddrsOp(p, b.pfx, clientv3.WithRev(rev))
		}
		tr, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, err
		}
		for i, b := range chunk {
			kvs := tr.Responses[i].GetResponseRange().Kvs
			if b.a, err = p.newBlockAlloc(b.pfx, s.rangeAddrs(p, kvs), p.gw); err != nil {
				return nil, fmt.Errorf("pool %s block %s: %w", poolID, b.pfx, err)
			}
			b.own = s.ownCount(kvs)
		}
	}
	p.blocks = own
	s.log.Debug("global pool loaded", "pool", poolID, "host", s.host, "blocks", len(own))
	return p, nil
}

// blockAddrsOp reads the address records of a block.
func (s *globalSpace) blockAddrsOp(p *gPool, blk netip.Prefix, opts ...clientv3.OpOption) clientv3.Op {
	from := p.addrKey(s, blk.Addr())
	to := p.addrKey(s, lastAddr(blk)) + "\x00"
	return clientv3.OpGet(from, append(opts, clientv3.WithRange(to))...)
}

// ownCount counts this host's addresses (gateways aside) among records.
func (s *globalSpace) ownCount(kvs []*mvccKV) int {
	n := 0
	for _, kv := range kvs {
		var r gAddrRecord
		if json.Unmarshal(kv.Value, &r) == nil && r.Host == s.host && !r.Gateway {
			n++
		}
	}
	return n
}

func (s *globalSpace) rangeAddrs(p *gPool, kvs []*mvccKV) []netip.Addr {
	out := make([]netip.Addr, 0, len(kvs))
	dir := s.addrDir(p.seg)
	for _, kv := range kvs {
		if a, err := parseHexAddr(strings.TrimPrefix(string(kv.Key), dir)); err == nil && p.rec.Pool.Contains(a) {
			out = append(out, a)
		}
	}
	return out
}

// newBlockAlloc is the allocator of one block: dynamic allocations from
// the block only, with the addresses given and the gateway marked used.
func (p *gPool) newBlockAlloc(blk netip.Prefix, used []netip.Addr, gw netip.Addr) (*alloc.Allocator, error) {
	used = slices.DeleteFunc(used, func(a netip.Addr) bool { return !blk.Contains(a) })
	a, err := alloc.Restore(p.rec.Pool, blk, used)
	if err != nil {
		return nil, err
	}
	if gw.IsValid() && blk.Contains(gw) {
		a.AllocateSpecific(gw) // ErrInUse if the gateway key exists: fine
	}
	return a, nil
}

func (p *gPool) ownBlock(a netip.Addr) *gBlock {
	i, ok := slices.BinarySearchFunc(p.blocks, a, func(b *gBlock, a netip.Addr) int {
		switch {
		case b.pfx.Contains(a):
			return 0
		case b.start.Less(a):
			return -1
		}
		return 1
	})
	if !ok {
		return nil
	}
	return p.blocks[i]
}

func (p *gPool) addBlock(b *gBlock) {
	i, _ := slices.BinarySearchFunc(p.blocks, b.start, func(x *gBlock, a netip.Addr) int { return x.start.Compare(a) })
	p.blocks = slices.Insert(p.blocks, i, b)
	p.claims++
}

func (p *gPool) dropBlock(b *gBlock) {
	p.blocks = slices.DeleteFunc(p.blocks, func(x *gBlock) bool { return x == b })
}

// markUsed records in this host's block, if it owns the block of a, that a
// is taken, and if mine, counts it as this host's; it reports whether it
// counted it.
func (p *gPool) markUsed(a netip.Addr, mine bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.ownBlock(a)
	if b == nil {
		return false
	}
	b.a.AllocateSpecific(a)
	if mine {
		b.own++
	}
	return mine
}

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
func (s *globalSpace) commitAddr(ctx context.Context, p *gPool, b *gBlock, a netip.Addr, val []byte, nonce string) (commitResult, *gAddrRecord, error) {
	key := p.addrKey(s, a)
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(p.key), "=", p.createRev),
	}
	elses := []clientv3.Op{clientv3.OpGet(key), clientv3.OpGet(p.key, clientv3.WithKeysOnly())}
	if b != nil {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(b.key), "=", b.rev))
		elses = append(elses, clientv3.OpGet(b.key, clientv3.WithKeysOnly()))
	}
	var res commitResult
	var other *gAddrRecord
	err := s.do(ctx, func(ctx context.Context) error {
		tr, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(val))).Else(elses...).Commit()
		if err != nil {
			return err
		}
		if tr.Succeeded {
			res = committed
			return nil
		}
		if kvs := tr.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			var rec gAddrRecord
			json.Unmarshal(kvs[0].Value, &rec)
			if slices.Contains(rec.Ops, nonce) {
				res = committed // an earlier attempt went through
				return nil
			}
			res, other = taken, &rec
			return nil
		}
		if kvs := tr.Responses[1].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != p.createRev {
			res = poolGone
			return nil
		}
		res = blockLost
		return nil
	})
	return res, other, err
}

func (s *globalSpace) newAddrRecord(req AddrRequest, a netip.Addr, nonce string) gAddrRecord {
	return gAddrRecord{AddrInfo: AddrInfo{Address: a, Endpoint: req.Endpoint, Gateway: req.Gateway, Host: s.host,
		MAC: req.MAC, At: time.Now().UTC()}, Ops: []string{nonce}}
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
func checkAddr(p *gPool, a netip.Addr) error {
	pool := p.rec.Pool
	if !pool.Contains(a) {
		return fmt.Errorf("%w: %s not in %s", alloc.ErrOutOfRange, a, pool)
	}
	host := pool.Addr().BitLen() - pool.Bits()
	netRes := !a.Is4() || host >= 2
	if (netRes && a == pool.Addr()) || (a.Is4() && host >= 2 && a == lastAddr(pool)) {
		return fmt.Errorf("%w: %s", alloc.ErrReserved, a)
	}
	return nil
}

func (s *globalSpace) requestSpecific(ctx context.Context, p *gPool, req AddrRequest) (netip.Addr, error) {
	a := req.Address
	if err := checkAddr(p, a); err != nil {
		return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: %w", p.id, err))
	}
	nonce := newNonce()
	val := mustJSON(s.newAddrRecord(req, a, nonce))
	res, other, err := s.commitAddr(ctx, p, nil, a, val, nonce)
	if err != nil {
		counted := p.markUsed(a, true)
		p.mu.Lock()
		p.doubt[a] = gDoubt{key: p.addrKey(s, a), val: val, counted: counted}
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

func holder(a netip.Addr, r *gAddrRecord) string {
	var parts []string
	if r.Gateway {
		parts = append(parts, "the gateway")
	}
	if r.Endpoint != "" {
		parts = append(parts, "endpoint "+r.Endpoint)
	}
	if r.Host != "" {
		parts = append(parts, "host "+r.Host)
	}
	if len(parts) == 0 {
		return a.String()
	}
	return a.String() + " (" + strings.Join(parts, ", ") + ")"
}

func (s *globalSpace) requestDynamic(ctx context.Context, p *gPool, req AddrRequest) (netip.Addr, error) {
	nonce := newNonce()
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
		val := mustJSON(s.newAddrRecord(req, a, nonce))
		res, _, err := s.commitAddr(ctx, p, b, a, val, nonce)
		if err != nil {
			p.mu.Lock()
			p.doubt[a] = gDoubt{key: p.addrKey(s, a), val: val, counted: true} // stays marked used
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

// pick takes a candidate from this host's blocks (marked used at once, so
// concurrent calls pick different ones) or returns a nil block. Serial
// allocation goes on after the host's cursor and does not wrap unless told.
func (p *gPool) pick(serial, wrap bool) (netip.Addr, *gBlock) {
	if !serial {
		for _, b := range p.blocks {
			if b.full {
				continue
			}
			if a, err := b.a.Allocate(); err == nil {
				b.own++
				return a, b
			}
			b.full = true
		}
		return netip.Addr{}, nil
	}
	i0 := 0
	if p.serial.IsValid() {
		i0, _ = slices.BinarySearchFunc(p.blocks, p.serial, func(b *gBlock, a netip.Addr) int {
			if b.pfx.Contains(a) {
				return 0
			}
			return b.start.Compare(a)
		})
	}
	n := len(p.blocks)
	if !wrap {
		n -= i0
	}
	for k := range n {
		b := p.blocks[(i0+k)%len(p.blocks)]
		if b.full {
			continue
		}
		a, err := b.a.AllocateSerial()
		if err != nil {
			b.full = true
			continue
		}
		if !wrap && (a.Less(p.serial) || (b.last.IsValid() && a.Less(b.last))) {
			b.a.Release(a) // the block's cursor wrapped: look further first
			continue
		}
		b.last, p.serial = a, a.Next()
		b.own++
		return a, b
	}
	return netip.Addr{}, nil
}

// claimBlock claims an unclaimed block of the pool for this host (after
// the serial cursor if afterCursor) and loads its addresses. gen is the
// p.claims the caller saw when it found no free address. false: no
// unclaimed block is left.
func (s *globalSpace) claimBlock(ctx context.Context, p *gPool, afterCursor bool, gen int) (bool, error) {
	p.claimMu.Lock()
	defer p.claimMu.Unlock()
	// Another call may have claimed one since the caller looked.
	p.mu.Lock()
	again := p.claims != gen
	cursor, gw := p.serial, p.gw
	p.mu.Unlock()
	if again {
		return true, nil
	}
	nonce := newNonce()
	size := uint64(1) << p.bb
	for range maxCAS {
		var got *gBlock
		var none bool
		err := s.do(ctx, func(ctx context.Context) error {
			resp, err := s.cli.Get(ctx, s.blockDir(p.seg), clientv3.WithPrefix())
			if err != nil {
				return err
			}
			claimed := make([]netip.Addr, 0, len(resp.Kvs))
			for _, kv := range resp.Kvs {
				start, err := parseHexAddr(strings.TrimPrefix(string(kv.Key), s.blockDir(p.seg)))
				if err != nil {
					continue
				}
				var br gBlockRecord
				if json.Unmarshal(kv.Value, &br) == nil && br.Nonce == nonce {
					// An earlier attempt claimed it: read its addresses.
					b := &gBlock{start: start, pfx: p.blockOf(start), key: string(kv.Key), rev: kv.CreateRevision}
					ar, err := s.cli.Txn(ctx).Then(s.blockAddrsOp(p, b.pfx)).Commit()
					if err != nil {
						return err
					}
					kvs := ar.Responses[0].GetResponseRange().Kvs
					if b.a, err = p.newBlockAlloc(b.pfx, s.rangeAddrs(p, kvs), gw); err != nil {
						return err
					}
					b.own = s.ownCount(kvs)
					got = b
					return nil
				}
				claimed = append(claimed, start)
			}
			from := p.rng.Addr()
			if afterCursor && cursor.IsValid() && p.rng.Contains(cursor) {
				from = p.blockOf(cursor).Addr()
			}
			start, ok := firstUnclaimed(claimed, from, lastAddr(p.rng), size)
			if !ok {
				none = true
				return nil
			}
			b := &gBlock{start: start, pfx: netip.PrefixFrom(start, start.BitLen()-p.bb), key: s.blockDir(p.seg) + hexAddr(start)}
			br := gBlockRecord{Host: s.host, Block: b.pfx, At: time.Now().UTC(), Nonce: nonce}
			tr, err := s.cli.Txn(ctx).If(
				clientv3.Compare(clientv3.CreateRevision(b.key), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(p.key), "=", p.createRev),
			).Then(clientv3.OpPut(b.key, string(mustJSON(br))), s.blockAddrsOp(p, b.pfx)).
				Else(clientv3.OpGet(p.key, clientv3.WithKeysOnly())).Commit()
			if err != nil {
				return err
			}
			if !tr.Succeeded {
				if kvs := tr.Responses[0].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != p.createRev {
					return errPoolGone
				}
				return errCASConflict // another host claimed it first
			}
			b.rev = tr.Header.Revision
			kvs := tr.Responses[1].GetResponseRange().Kvs
			if b.a, err = p.newBlockAlloc(b.pfx, s.rangeAddrs(p, kvs), gw); err != nil {
				return err
			}
			b.own = s.ownCount(kvs)
			got = b
			return nil
		})
		switch {
		case errors.Is(err, errCASConflict):
			continue
		case errors.Is(err, errPoolGone):
			return false, err
		case err != nil:
			return false, s.storeErr("claim a block of pool "+p.id, err)
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

// firstUnclaimed returns the first block start >= from (wrapping to the
// start of the range is the caller's business) not in claimed (sorted).
func firstUnclaimed(claimed []netip.Addr, from, last netip.Addr, size uint64) (netip.Addr, bool) {
	c := from
	i, _ := slices.BinarySearchFunc(claimed, c, netip.Addr.Compare)
	for ; i < len(claimed) && claimed[i] == c; i++ {
		next, ok := addAddr(c, size)
		if !ok {
			return netip.Addr{}, false
		}
		c = next
	}
	if last.Less(c) {
		return netip.Addr{}, false
	}
	return c, true
}

// borrow allocates outside this host's blocks, from a fresh read of every
// address of the pool: the pool has no unclaimed block left.
func (s *globalSpace) borrow(ctx context.Context, p *gPool, req AddrRequest) (netip.Addr, error) {
	var used []netip.Addr
	err := s.do(ctx, func(ctx context.Context) error {
		from := p.addrKey(s, p.rec.Pool.Addr())
		to := p.addrKey(s, lastAddr(p.rec.Pool)) + "\x00"
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(to), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		used = s.rangeAddrs(p, resp.Kvs)
		return nil
	})
	if err != nil {
		return netip.Addr{}, s.storeErr("request address", err)
	}
	a0, err := alloc.Restore(p.rec.Pool, p.rec.SubPool, used)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("global address space: pool %s: %w", p.id, err)
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
	nonce := newNonce()
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
		val := mustJSON(s.newAddrRecord(req, a, nonce))
		res, _, err := s.commitAddr(ctx, p, nil, a, val, nonce)
		if err != nil {
			p.mu.Lock()
			p.doubt[a] = gDoubt{key: p.addrKey(s, a), val: val, counted: b != nil}
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

// requestGateway returns the pool's gateway, the same on every host,
// recording the pool's gateway on the first request and counting holders.
func (s *globalSpace) requestGateway(ctx context.Context, p *gPool, req AddrRequest) (netip.Addr, error) {
	if req.Address.IsValid() {
		if err := checkAddr(p, req.Address); err != nil {
			return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: gateway: %w", p.id, err))
		}
	}
	nonce := newNonce()
	var fallback netip.Addr // when the default gateway address is taken
	for range maxCAS {
		var gw netip.Addr
		err := s.do(ctx, func(ctx context.Context) error {
			resp, err := s.cli.Get(ctx, p.key)
			if err != nil {
				return err
			}
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != p.createRev {
				return errPoolGone
			}
			pkv := resp.Kvs[0]
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
			aresp, err := s.cli.Get(ctx, key)
			if err != nil {
				return err
			}
			var ar gAddrRecord
			var amod int64
			if len(aresp.Kvs) > 0 {
				amod = aresp.Kvs[0].ModRevision
				if err := json.Unmarshal(aresp.Kvs[0].Value, &ar); err != nil {
					return fmt.Errorf("address %s: %w", want, err)
				}
				if slices.Contains(ar.Ops, nonce) {
					gw = want
					return nil
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
				if aresp, err = s.cli.Get(ctx, key); err != nil {
					return err
				}
				ar, amod = gAddrRecord{}, 0
				if len(aresp.Kvs) > 0 {
					amod = aresp.Kvs[0].ModRevision
					json.Unmarshal(aresp.Kvs[0].Value, &ar)
				}
			}
			if amod != 0 && !ar.Gateway {
				if setPool && !req.Address.IsValid() {
					return errGatewayTaken{want}
				}
				return fmt.Errorf("%w: %s cannot be the gateway", alloc.ErrInUse, holder(want, &ar))
			}
			var cmps []clientv3.Cmp
			var ops []clientv3.Op
			if amod == 0 {
				ar = s.newAddrRecord(AddrRequest{Gateway: true, Endpoint: req.Endpoint, MAC: req.MAC}, want, nonce)
				ar.Hosts = map[string]int{s.host: 1}
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
			} else {
				ar.Hosts = liveCounts(ar.Hosts)
				ar.Hosts[s.host]++
				ar.Ops = addOp(ar.Ops, nonce)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", amod))
			}
			ops = append(ops, clientv3.OpPut(key, string(mustJSON(ar))))
			if setPool {
				rec.Gateway = want
				rec.Ops = addOp(rec.Ops, nonce)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p.key), "=", pkv.ModRevision))
				ops = append(ops, clientv3.OpPut(p.key, string(mustJSON(rec))))
			} else {
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(p.key), "=", p.createRev))
			}
			tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
			if err != nil {
				return err
			}
			if !tr.Succeeded {
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
			return netip.Addr{}, s.storeErr("request gateway", err)
		}
		p.mu.Lock()
		if old := p.gw; old != gw {
			// An explicit gateway: the default one is free for endpoints
			// (if a host took it meanwhile, etcd says so).
			p.gw = gw
			if b := p.ownBlock(old); b != nil {
				b.a.Release(old)
				b.full = false
			}
		}
		if b := p.ownBlock(gw); b != nil {
			b.a.AllocateSpecific(gw)
		}
		p.mu.Unlock()
		return gw, nil
	}
	return netip.Addr{}, plugin.Errorf(503, "global address space: pool %s: gateway: too much contention, try again", p.id)
}

type errGatewayTaken struct{ a netip.Addr }

func (e errGatewayTaken) Error() string { return "gateway " + e.a.String() + " taken" }

func mapKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k, v := range m {
			if v > 0 && !yield(k) {
				return
			}
		}
	}
}

// firstFree is the lowest address of the allocation range without a key.
func (s *globalSpace) firstFree(ctx context.Context, p *gPool) (netip.Addr, error) {
	var used []netip.Addr
	err := s.do(ctx, func(ctx context.Context) error {
		resp, err := s.cli.Get(ctx, p.addrKey(s, p.rec.Pool.Addr()),
			clientv3.WithRange(p.addrKey(s, lastAddr(p.rec.Pool))+"\x00"), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		used = s.rangeAddrs(p, resp.Kvs)
		return nil
	})
	if err != nil {
		return netip.Addr{}, s.storeErr("request gateway", err)
	}
	a, err := alloc.Restore(p.rec.Pool, p.rec.SubPool, used)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("global address space: pool %s: %w", p.id, err)
	}
	first, err := a.Allocate()
	if err != nil {
		return netip.Addr{}, asPluginError(fmt.Errorf("global address space: pool %s: gateway: %w", p.id, err))
	}
	return first, nil
}

// resolveDoubts settles address writes whose outcome was unknown: the key
// is deleted if it still holds what this host wrote (the caller was told
// the allocation failed), and the address freed here if the key is gone.
func (s *globalSpace) resolveDoubts(ctx context.Context, p *gPool) {
	p.mu.Lock()
	if len(p.doubt) == 0 || time.Since(p.doubtTry) < time.Second {
		p.mu.Unlock()
		return
	}
	p.doubtTry = time.Now()
	doubts := make(map[netip.Addr]gDoubt, len(p.doubt))
	for a, d := range p.doubt {
		doubts[a] = d
	}
	p.mu.Unlock()
	retry := etcd.Retry{Attempt: 2 * time.Second, Total: 3 * time.Second}
	for a, d := range doubts {
		free := false
		err := retry.Do(ctx, func(ctx context.Context) error {
			tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(d.key), "=", string(d.val))).
				Then(clientv3.OpDelete(d.key)).Else(clientv3.OpGet(d.key, clientv3.WithKeysOnly())).Commit()
			if err != nil {
				return err
			}
			free = tr.Succeeded || len(tr.Responses[0].GetResponseRange().Kvs) == 0
			return nil
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
	key := p.addrKey(s, a)
	nonce := newNonce()
	// sent is the create revision of the record a delete was sent for: if
	// its reply was lost, the retry finds that record gone (or replaced by
	// a new allocation, which it must not delete) and knows it succeeded.
	var sent int64
	for range maxCAS {
		var gone, mine bool
		err := s.do(ctx, func(ctx context.Context) error {
			resp, err := s.cli.Get(ctx, key)
			if err != nil {
				return err
			}
			if sent != 0 && (len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != sent) {
				gone, mine = true, true
				return nil
			}
			if len(resp.Kvs) == 0 {
				gone = true
				return nil
			}
			kv := resp.Kvs[0]
			var rec gAddrRecord
			if err := json.Unmarshal(kv.Value, &rec); err != nil {
				return fmt.Errorf("address %s: %w", a, err)
			}
			cmp := clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)
			var tr *clientv3.TxnResponse
			if rec.Gateway {
				if slices.Contains(rec.Ops, nonce) || rec.Hosts[s.host] <= 0 {
					return nil // done, or not held by this host: harmless
				}
				rec.Hosts = liveCounts(rec.Hosts)
				if rec.Hosts[s.host]--; rec.Hosts[s.host] == 0 {
					delete(rec.Hosts, s.host)
				}
				if len(rec.Hosts) == 0 {
					gone = true
					tr, err = s.cli.Txn(ctx).If(cmp).Then(clientv3.OpDelete(key)).Commit()
				} else {
					rec.Ops = addOp(rec.Ops, nonce)
					tr, err = s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(mustJSON(rec)))).Commit()
				}
			} else {
				if rec.Host != s.host {
					return plugin.Conflict("global address space: pool %s: address %s is held by host %s (endpoint %q), not by %s; not released",
						poolID, a, rec.Host, rec.Endpoint, s.host)
				}
				gone, mine = true, true
				sent = kv.CreateRevision
				tr, err = s.cli.Txn(ctx).If(cmp).Then(clientv3.OpDelete(key)).Commit()
			}
			if err != nil {
				return err
			}
			if !tr.Succeeded {
				gone, sent = false, 0
				return errCASConflict
			}
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
	b := p.ownBlock(a)
	if b == nil {
		p.mu.Unlock()
		return
	}
	if a != p.gw {
		b.a.Release(a)
		b.full = false
	}
	if mine {
		b.own = max(b.own-1, 0)
	}
	if b.own != 0 {
		p.mu.Unlock()
		return
	}
	// None of this host's addresses left, none in flight: give it back.
	// Other hosts' addresses may remain; the next owner reads them.
	p.dropBlock(b)
	p.mu.Unlock()
	err := s.do(ctx, func(ctx context.Context) error {
		_, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(b.key), "=", b.rev)).
			Then(clientv3.OpDelete(b.key)).Commit()
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

func (s *globalSpace) Pools(ctx context.Context) ([]PoolInfo, error) {
	var out []PoolInfo
	err := s.do(ctx, func(ctx context.Context) error {
		pools, rev, err := s.readPools(ctx)
		if err != nil {
			return err
		}
		out = make([]PoolInfo, 0, len(pools))
		for chunk := range slices.Chunk(pools, 64) {
			ops := make([]clientv3.Op, len(chunk))
			for i, p := range chunk {
				ops[i] = clientv3.OpGet(s.addrDir(cidrSeg(p.rec.Pool)), clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
			}
			tr, err := s.cli.Txn(ctx).Then(ops...).Commit()
			if err != nil {
				return err
			}
			for i, p := range chunk {
				info := p.rec.info()
				info.Allocated = uint64(tr.Responses[i].GetResponseRange().Count)
				out = append(out, info)
			}
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
		tr, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(s.poolKey(seg)),
			clientv3.OpGet(s.addrDir(seg), clientv3.WithPrefix()),
		).Commit()
		if err != nil {
			return err
		}
		pk := tr.Responses[0].GetResponseRange().Kvs
		var rec gPoolRecord
		if len(pk) == 0 || json.Unmarshal(pk[0].Value, &rec) != nil || rec.ID != poolID {
			return plugin.NotFound("global address space: no pool %s", poolID)
		}
		kvs := tr.Responses[1].GetResponseRange().Kvs
		out = make([]AddrInfo, 0, len(kvs))
		for _, kv := range kvs {
			var ar gAddrRecord
			if err := json.Unmarshal(kv.Value, &ar); err != nil {
				s.log.Warn("global address space: unreadable address record", "key", string(kv.Key), "err", err)
				continue
			}
			if ar.Gateway && len(ar.Hosts) > 0 {
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
