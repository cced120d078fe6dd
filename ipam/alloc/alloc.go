package alloc

import (
	"cmp"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/big"
	"net/netip"
	"slices"
)

// Errors returned by this package. They are wrapped with the address or
// prefix concerned; test with errors.Is.
var (
	// ErrPoolExhausted: no free address is left in the allocation range.
	ErrPoolExhausted = errors.New("no available addresses in pool")
	// ErrInUse: the specific address requested is already allocated.
	ErrInUse = errors.New("address already in use")
	// ErrOutOfRange: the address (or sub-pool) is not inside the pool,
	// is of the other family, is invalid, or carries an IPv6 zone.
	ErrOutOfRange = errors.New("address out of pool range")
	// ErrReserved: the address is the pool's network address or IPv4
	// broadcast address, which are never handed out.
	ErrReserved = errors.New("address reserved")
	// ErrInvalidPrefix: a pool, default-pool definition or requested
	// subnet size is malformed, or no default pool can hold a subnet of the
	// size requested.
	ErrInvalidPrefix = errors.New("invalid prefix")
)

// Range is an inclusive range of allocated addresses, First <= Last.
type Range struct {
	First netip.Addr `json:"first"`
	Last  netip.Addr `json:"last"`
}

// Snapshot is the complete state of an Allocator; FromSnapshot rebuilds an
// identical one (same addresses and same serial cursor). Its size is
// proportional to the number of ranges, not addresses.
type Snapshot struct {
	Pool    netip.Prefix `json:"pool"`
	SubPool netip.Prefix `json:"subPool,omitzero"`
	Ranges  []Range      `json:"ranges,omitempty"`
	// Next is where AllocateSerial resumes; the zero Addr means the start
	// of the allocation range.
	Next netip.Addr `json:"next,omitzero"`
}

// Allocator hands out the addresses of one pool. It is not safe for
// concurrent use; the plugin serialises calls per pool.
//
// The zero value is not usable; construct with New, Restore or FromSnapshot.
type Allocator struct {
	pool, sub netip.Prefix
	is4       bool
	first     u128 // pool bounds
	last      u128
	netRes    bool // first is reserved (network / subnet-router anycast)
	bcastRes  bool // last is reserved (IPv4 broadcast)

	// Dynamic allocation range: the sub-pool (or pool) minus reserved
	// addresses, empty when dynEmpty.
	dlo, dhi u128
	dynEmpty bool

	set      spanTree // allocated addresses as disjoint, non-adjacent spans
	count    u128     // allocated addresses
	dynCount u128     // allocated addresses inside [dlo, dhi]

	// Serial cursor: the address after the last dynamic allocation.
	next      u128
	nextValid bool
}

// New returns an empty allocator for pool. Dynamic allocations (Allocate,
// AllocateSerial) come from subPool, which must lie inside pool; the zero
// Prefix means the whole pool. AllocateSpecific accepts any address of the
// pool, as docker does for --ip outside --ip-range. Both prefixes are masked.
//
// Reserved addresses, following docker's default IPAM: the network address
// of IPv4 pools larger than /31 and of every IPv6 pool (the subnet-router
// anycast address; a /128 therefore has nothing to hand out), and the
// broadcast address of IPv4 pools larger than /31.
func New(pool, subPool netip.Prefix) (*Allocator, error) {
	if !pool.IsValid() {
		return nil, fmt.Errorf("%w: pool %s", ErrInvalidPrefix, pool)
	}
	pool = pool.Masked()
	a := &Allocator{pool: pool, is4: pool.Addr().Is4()}
	ps := prefixSpan(pool)
	a.first, a.last = ps.lo, ps.hi
	a.netRes, a.bcastRes = reservedEnds(pool)

	sub := ps
	if subPool.IsValid() {
		subPool = subPool.Masked()
		if subPool.Addr().Is4() != a.is4 || subPool.Bits() < pool.Bits() || !pool.Contains(subPool.Addr()) {
			return nil, fmt.Errorf("%w: sub-pool %s not within pool %s", ErrOutOfRange, subPool, pool)
		}
		if subPool != pool {
			a.sub = subPool
		}
		sub = prefixSpan(subPool)
	} else if subPool != (netip.Prefix{}) {
		return nil, fmt.Errorf("%w: sub-pool %s", ErrInvalidPrefix, subPool)
	}
	// Trim reserved addresses off the ends of the dynamic range, taking care
	// that a range holding nothing but a reserved address becomes empty
	// rather than wrapping around.
	a.dlo, a.dhi = sub.lo, sub.hi
	if a.netRes && a.dlo == a.first {
		if a.dlo == a.dhi {
			a.dynEmpty = true
		}
		a.dlo = a.dlo.inc()
	}
	if a.bcastRes && a.dhi == a.last { // never a one-address range: bcastRes needs >= 4
		if a.dlo == a.dhi {
			a.dynEmpty = true
		}
		a.dhi = a.dhi.dec()
	}
	return a, nil
}

// Restore returns an allocator for pool/subPool with the given addresses
// allocated, e.g. rebuilt from the endpoints docker reports at start-up.
// Duplicates are harmless; an address outside the pool or reserved fails
// the whole call. The serial cursor starts at the beginning, as in docker
// after a restart; use Snapshot/FromSnapshot to keep it.
func Restore(pool, subPool netip.Prefix, allocated []netip.Addr) (*Allocator, error) {
	a, err := New(pool, subPool)
	if err != nil {
		return nil, err
	}
	xs := make([]u128, 0, len(allocated))
	for _, addr := range allocated {
		x, err := a.index(addr)
		if err != nil {
			return nil, err
		}
		if a.reserved(x) {
			return nil, fmt.Errorf("%w: %s", ErrReserved, addr)
		}
		xs = append(xs, x)
	}
	slices.SortFunc(xs, u128.cmp)
	spans := make([]span, 0, len(xs))
	for _, x := range xs {
		spans = appendCoalesced(spans, span{x, x})
	}
	a.load(spans)
	return a, nil
}

// FromSnapshot rebuilds the allocator that produced s.
func FromSnapshot(s Snapshot) (*Allocator, error) {
	a, err := New(s.Pool, s.SubPool)
	if err != nil {
		return nil, err
	}
	spans := make([]span, 0, len(s.Ranges))
	for _, r := range s.Ranges {
		lo, err := a.index(r.First)
		if err != nil {
			return nil, err
		}
		hi, err := a.index(r.Last)
		if err != nil {
			return nil, err
		}
		if hi.less(lo) {
			return nil, fmt.Errorf("%w: range %s-%s is reversed", ErrOutOfRange, r.First, r.Last)
		}
		if (a.netRes && lo == a.first) || (a.bcastRes && hi == a.last) {
			return nil, fmt.Errorf("%w: range %s-%s", ErrReserved, r.First, r.Last)
		}
		spans = append(spans, span{lo, hi})
	}
	slices.SortFunc(spans, func(x, y span) int { return x.lo.cmp(y.lo) })
	merged := spans[:0]
	for _, sp := range spans {
		merged = appendCoalesced(merged, sp)
	}
	a.load(merged)
	if s.Next.IsValid() {
		x, err := a.index(s.Next)
		if err != nil {
			return nil, fmt.Errorf("serial cursor: %w", err)
		}
		a.next, a.nextValid = x, true
	}
	return a, nil
}

// appendCoalesced appends s to spans sorted by lo, merging it into the last
// span when they overlap or touch.
func appendCoalesced(spans []span, s span) []span {
	if n := len(spans); n > 0 {
		last := &spans[n-1]
		if !last.hi.less(s.lo) || last.hi.inc() == s.lo {
			if last.hi.less(s.hi) {
				last.hi = s.hi
			}
			return spans
		}
	}
	return append(spans, s)
}

// load inserts sorted, disjoint, non-adjacent spans into an empty allocator.
func (a *Allocator) load(spans []span) {
	for _, s := range spans {
		a.set.insert(s)
		a.count, _ = a.count.add(s.hi.sub(s.lo).inc())
		if a.dynEmpty {
			continue
		}
		lo, hi := s.lo, s.hi
		if lo.less(a.dlo) {
			lo = a.dlo
		}
		if a.dhi.less(hi) {
			hi = a.dhi
		}
		if !hi.less(lo) {
			a.dynCount, _ = a.dynCount.add(hi.sub(lo).inc())
		}
	}
}

// Pool returns the (masked) pool prefix.
func (a *Allocator) Pool() netip.Prefix { return a.pool }

// SubPool returns the dynamic-allocation sub-pool, or the zero Prefix when
// it is the whole pool.
func (a *Allocator) SubPool() netip.Prefix { return a.sub }

// index validates addr as a member of the pool and returns its integer.
func (a *Allocator) index(addr netip.Addr) (u128, error) {
	if !a.pool.Contains(addr) { // also false for invalid, zoned or other-family addresses
		return u128{}, fmt.Errorf("%w: %s not in %s", ErrOutOfRange, addr, a.pool)
	}
	return fromAddr(addr), nil
}

func (a *Allocator) reserved(x u128) bool {
	return (a.netRes && x == a.first) || (a.bcastRes && x == a.last)
}

// firstFree returns the lowest free address >= x, and the span ending just
// before it (nil if none), which is t.floor of the result. ok is false when
// no free address >= x exists in the family.
func (a *Allocator) firstFree(x u128) (free u128, left *span, ok bool) {
	s := a.set.floor(x)
	if s != nil && !s.hi.less(x) {
		if s.hi == maxU128 {
			return u128{}, nil, false
		}
		// Spans are never adjacent, so the address right after one is free.
		x = s.hi.inc()
	}
	return x, s, true
}

// Allocate returns the lowest free address of the allocation range, in
// O(log n) for n allocated ranges: the first gap comes from one lookup.
func (a *Allocator) Allocate() (netip.Addr, error) {
	return a.allocFrom(a.dlo)
}

// AllocateSerial returns the lowest free address after the address most
// recently returned by Allocate or AllocateSerial, wrapping around to the
// start of the range (docker's com.docker.network.ipam.serial=true; like
// docker's bitmap cursor, specific allocations and releases do not move it).
func (a *Allocator) AllocateSerial() (netip.Addr, error) {
	if a.nextValid && !a.next.less(a.dlo) && !a.dhi.less(a.next) {
		return a.allocFrom(a.next)
	}
	return a.allocFrom(a.dlo)
}

func (a *Allocator) allocFrom(start u128) (netip.Addr, error) {
	if !a.dynEmpty {
		x, left, ok := a.firstFree(start)
		if (!ok || a.dhi.less(x)) && start != a.dlo {
			x, left, ok = a.firstFree(a.dlo) // wrap around
		}
		if ok && !a.dhi.less(x) {
			a.set.addCoalesced(span{x, x}, left)
			a.count = a.count.inc()
			a.dynCount = a.dynCount.inc()
			a.next, a.nextValid = x.inc(), x != a.dhi
			return toAddr(x, a.is4), nil
		}
	}
	r := a.pool
	if a.sub.IsValid() {
		r = a.sub
	}
	return netip.Addr{}, fmt.Errorf("%w: %s", ErrPoolExhausted, r)
}

// AllocateSpecific allocates addr, which may lie anywhere in the pool
// (also outside the sub-pool). Errors: ErrOutOfRange, ErrReserved, ErrInUse.
func (a *Allocator) AllocateSpecific(addr netip.Addr) error {
	x, err := a.index(addr)
	if err != nil {
		return err
	}
	if a.reserved(x) {
		return fmt.Errorf("%w: %s", ErrReserved, addr)
	}
	left := a.set.floor(x)
	if left != nil && !left.hi.less(x) {
		return fmt.Errorf("%w: %s", ErrInUse, addr)
	}
	a.set.addCoalesced(span{x, x}, left)
	a.count = a.count.inc()
	if a.inDyn(x) {
		a.dynCount = a.dynCount.inc()
	}
	return nil
}

func (a *Allocator) inDyn(x u128) bool {
	return !a.dynEmpty && !x.less(a.dlo) && !a.dhi.less(x)
}

// Release frees addr. Releasing an address of the pool that is not
// allocated, including a reserved one, is a harmless no-op returning nil:
// docker releases gateways and addresses it never obtained from the plugin.
// Only an address outside the pool (or of the other family) is an error,
// ErrOutOfRange, since it means the caller picked the wrong pool.
func (a *Allocator) Release(addr netip.Addr) error {
	x, err := a.index(addr)
	if err != nil {
		return err
	}
	c := a.set.floor(x)
	if c == nil || c.hi.less(x) {
		return nil
	}
	a.set.removeFrom(span{x, x}, c)
	a.count = a.count.dec()
	if a.inDyn(x) {
		a.dynCount = a.dynCount.dec()
	}
	return nil
}

// IsAllocated reports whether addr is allocated. Reserved and out-of-pool
// addresses report false.
func (a *Allocator) IsAllocated(addr netip.Addr) bool {
	if !a.pool.Contains(addr) {
		return false
	}
	x := fromAddr(addr)
	s := a.set.floor(x)
	return s != nil && !s.hi.less(x)
}

// Count returns the number of allocated addresses (saturating at
// MaxUint64, which only a hand-made snapshot could reach).
func (a *Allocator) Count() uint64 {
	if a.count.hi != 0 {
		return math.MaxUint64
	}
	return a.count.lo
}

// Free returns how many addresses Allocate can still hand out: the
// allocation range minus reserved and allocated addresses. It is a big.Int
// because an IPv6 pool can have up to 2^128-1 of them.
func (a *Allocator) Free() *big.Int {
	if a.dynEmpty {
		return new(big.Int)
	}
	size := a.dhi.sub(a.dlo).big()
	size.Add(size, big.NewInt(1)) // may be 2^128, beyond u128
	return size.Sub(size, a.dynCount.big())
}

// NumRanges returns the number of maximal runs of allocated addresses,
// which is what memory use is proportional to.
func (a *Allocator) NumRanges() int { return a.set.len() }

// Ranges iterates over the maximal runs of allocated addresses in
// ascending order. The allocator must not be modified during iteration.
func (a *Allocator) Ranges() iter.Seq[Range] {
	return func(yield func(Range) bool) {
		a.set.ascend(func(s span) bool {
			return yield(Range{toAddr(s.lo, a.is4), toAddr(s.hi, a.is4)})
		})
	}
}

// All iterates over every allocated address in ascending order. The
// allocator must not be modified during iteration.
func (a *Allocator) All() iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		a.set.ascend(func(s span) bool {
			for x := s.lo; ; x = x.inc() {
				if !yield(toAddr(x, a.is4)) {
					return false
				}
				if x == s.hi {
					return true
				}
			}
		})
	}
}

// Snapshot captures the allocator's state for FromSnapshot.
func (a *Allocator) Snapshot() Snapshot {
	s := Snapshot{Pool: a.pool, SubPool: a.sub, Ranges: make([]Range, 0, a.set.len())}
	for r := range a.Ranges() {
		s.Ranges = append(s.Ranges, r)
	}
	if a.nextValid {
		s.Next = toAddr(a.next, a.is4)
	}
	return s
}

// String summarises the allocator for logs.
func (a *Allocator) String() string {
	return fmt.Sprintf("pool %s sub-pool %s: %d allocated in %d ranges", a.pool, cmp.Or(a.sub, a.pool), a.Count(), a.NumRanges())
}
