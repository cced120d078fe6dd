package alloc

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
)

// Errors of the PoolAllocator, wrapped with the prefixes concerned.
var (
	// ErrNoMoreSubnets: every default pool is used up (or excluded).
	ErrNoMoreSubnets = errors.New("all predefined address pools have been fully subnetted")
	// ErrPoolOverlap: the pool overlaps one already allocated.
	ErrPoolOverlap = errors.New("pool overlaps with other one on this address space")
	// ErrUnknownPool: the pool released is not allocated (exact prefix match).
	ErrUnknownPool = errors.New("pool not allocated")
)

// PoolSpec is one entry of daemon.json's default-address-pools: Base is
// split into subnets of prefix length Size.
type PoolSpec struct {
	Base netip.Prefix `json:"base"`
	Size int          `json:"size"`
}

func (s PoolSpec) String() string { return fmt.Sprintf("%s/size %d", s.Base, s.Size) }

// DockerDefaultPools returns docker's local-scope default address pools.
func DockerDefaultPools() []PoolSpec {
	return []PoolSpec{
		{netip.MustParsePrefix("172.17.0.0/16"), 16},
		{netip.MustParsePrefix("172.18.0.0/16"), 16},
		{netip.MustParsePrefix("172.19.0.0/16"), 16},
		{netip.MustParsePrefix("172.20.0.0/14"), 16},
		{netip.MustParsePrefix("172.24.0.0/14"), 16},
		{netip.MustParsePrefix("172.28.0.0/14"), 16},
		{netip.MustParsePrefix("192.168.0.0/16"), 20},
	}
}

// DockerGlobalDefaultPools returns docker's global-scope (swarm) default
// address pools.
func DockerGlobalDefaultPools() []PoolSpec {
	return []PoolSpec{{netip.MustParsePrefix("10.0.0.0/8"), 24}}
}

// DeriveULAPool returns the IPv6 default pool dockerd derives from its host
// ID when no IPv6 pool is configured (deriveULABaseNetwork): fd00::/8 plus the
// 40 low bits of the first 8 bytes of sha256(hostID), read big-endian, form
// the Global ID of an RFC 4193 /48, split into /64s. Stable for a host ID.
func DeriveULAPool(hostID string) PoolSpec {
	sum := sha256.Sum256([]byte(hostID))
	gid := binary.BigEndian.Uint64(sum[:8]) & (1<<40 - 1)
	a := [16]byte{0: 0xfd}
	for i := range 5 { // bytes 1..5 hold bits 119..80, i.e. gid<<80
		a[1+i] = byte(gid >> (32 - 8*i))
	}
	return PoolSpec{Base: netip.PrefixFrom(netip.AddrFrom16(a), 48), Size: 64}
}

// PoolAllocator hands out subnets from default address pools, like
// dockerd's predefined-pool allocator, and tracks explicitly requested pools
// so that neither overlaps the other. It is not safe for concurrent use.
//
// Allocated pools are kept twice per family: in a map from first to last
// address (exact pools: O(1) release, the hot path of network removal), and
// coalesced in a spanTree (so that a run of adjacent pools is a single span).
// The search for a subnet jumps from each blocking span to the next aligned
// candidate after it, so its cost is O((r+e) log n) where r is the number of
// allocated runs and e the excluded prefixes inside the default pools
// scanned — a packed 10.0.0.0/8 with 1000 /24s is one run, and finding the
// next /24 is one jump. Naming the pool an explicit request overlaps finds
// the first overlapping run in the tree, then the pool holding its first
// overlapping address by probing the map at each prefix length.
type PoolAllocator struct {
	fams [2]poolFamily // [0] IPv4, [1] IPv6
}

type poolFamily struct {
	defaults []PoolSpec    // sorted, non-overlapping
	pools    map[u128]u128 // first -> last address of each allocated pool
	used     spanTree      // union of allocated pools, coalesced
}

func famIndex(is6 bool) int {
	if is6 {
		return 1
	}
	return 0
}

// NewPoolAllocator returns an allocator over the default pools, which may
// mix IPv4 and IPv6 (but not IPv4-mapped IPv6, which would be handed out
// as IPv6 subnets). As dockerd does, each family's pools are sorted by
// address and a pool overlapping an earlier (shorter or lower) one is
// dropped: subnets are handed out lowest address first, not in list order.
func NewPoolAllocator(defaults []PoolSpec) (*PoolAllocator, error) {
	p := &PoolAllocator{}
	for _, d := range defaults {
		if !d.Base.IsValid() || d.Size < d.Base.Bits() || d.Size > d.Base.Addr().BitLen() {
			return nil, fmt.Errorf("%w: default pool %s", ErrInvalidPrefix, d)
		}
		if d.Base.Addr().Is4In6() {
			return nil, fmt.Errorf("%w: default pool %s is IPv4-mapped IPv6; give IPv4 pools in IPv4 form", ErrInvalidPrefix, d)
		}
		d.Base = d.Base.Masked()
		f := &p.fams[famIndex(d.Base.Addr().Is6())]
		f.defaults = append(f.defaults, d)
	}
	for i := range p.fams {
		f := &p.fams[i]
		slices.SortStableFunc(f.defaults, func(x, y PoolSpec) int {
			if c := x.Base.Addr().Compare(y.Base.Addr()); c != 0 {
				return c
			}
			return x.Base.Bits() - y.Base.Bits()
		})
		kept := f.defaults[:0]
		for _, d := range f.defaults {
			if len(kept) > 0 && kept[len(kept)-1].Base.Overlaps(d.Base) {
				continue
			}
			kept = append(kept, d)
		}
		f.defaults = kept
	}
	return p, nil
}

// Allocate returns the lowest free subnet of the default pools of the
// family (v6 selects IPv6), that overlaps neither an allocated pool nor any
// prefix in exclude (e.g. the host's routes; prefixes of the other family
// are ignored), and records it as allocated.
func (p *PoolAllocator) Allocate(v6 bool, exclude []netip.Prefix) (netip.Prefix, error) {
	return p.AllocateSize(v6, 0, exclude)
}

// AllocateSize is Allocate for a subnet of prefix length size (0: each
// default pool's own size), as dockerd does for a pool given as an
// unspecified address with a length (--subnet 0.0.0.0/24): the default
// pools whose base is at least that large are split into subnets of that
// size instead, and the others are skipped. If none is large enough, the
// error wraps ErrInvalidPrefix.
func (p *PoolAllocator) AllocateSize(v6 bool, size int, exclude []netip.Prefix) (netip.Prefix, error) {
	fam := "IPv4"
	bitLen := 32
	if v6 {
		fam, bitLen = "IPv6", 128
	}
	if size < 0 || size > bitLen {
		return netip.Prefix{}, fmt.Errorf("%w: %s subnet size /%d", ErrInvalidPrefix, fam, size)
	}
	f := &p.fams[famIndex(v6)]
	ex := excludeSpans(v6, exclude)
	eligible := false
	for _, d := range f.defaults {
		if size != 0 {
			if d.Base.Bits() > size {
				continue
			}
			d.Size = size
		}
		eligible = true
		base := prefixSpan(d.Base)
		hostBits := d.Base.Addr().BitLen() - d.Size
		mask := lowMask(hostBits)
		// Each pass either returns or jumps c past a blocking span; since
		// candidates only move forward, each blocker is passed at most once.
		c, ok := base.lo, true
		for ok && !base.hi.less(c) {
			cand := span{c, c.or(mask)}
			if s := f.used.floor(cand.hi); s != nil && !s.hi.less(c) {
				c, ok = alignAfter(s.hi, mask)
				continue
			}
			if i := floorSpan(ex, cand.hi); i >= 0 && !ex[i].hi.less(c) {
				c, ok = alignAfter(ex[i].hi, mask)
				continue
			}
			f.add(cand)
			return netip.PrefixFrom(toAddr(c, !v6), d.Size), nil
		}
	}
	if len(f.defaults) == 0 {
		return netip.Prefix{}, fmt.Errorf("%w: there are no %s default pools", ErrNoMoreSubnets, fam)
	}
	if !eligible && size != 0 {
		return netip.Prefix{}, fmt.Errorf("%w: no %s default pool is large enough for a /%d subnet (default pools: %v)", ErrInvalidPrefix, fam, size, f.defaults)
	}
	return netip.Prefix{}, fmt.Errorf("%w (%s)", ErrNoMoreSubnets, fam)
}

// alignAfter returns the first multiple of mask+1 above x, false on overflow.
func alignAfter(x, mask u128) (u128, bool) {
	if x == maxU128 {
		return u128{}, false
	}
	y, carry := x.inc().add(mask)
	return y.andNot(mask), !carry
}

// excludeSpans converts the prefixes of one family into sorted, merged spans.
func excludeSpans(v6 bool, exclude []netip.Prefix) []span {
	spans := make([]span, 0, len(exclude))
	for _, e := range exclude {
		if e.IsValid() && e.Addr().Is6() == v6 {
			spans = append(spans, prefixSpan(e))
		}
	}
	slices.SortFunc(spans, func(x, y span) int { return x.lo.cmp(y.lo) })
	merged := spans[:0]
	for _, s := range spans {
		merged = appendCoalesced(merged, s)
	}
	return merged
}

// floorSpan returns the index of the last span with lo <= x, or -1.
func floorSpan(spans []span, x u128) int {
	i, _ := slices.BinarySearchFunc(spans, x, func(s span, x u128) int {
		if x.less(s.lo) {
			return 1
		}
		return -1
	})
	return i - 1
}

func (f *poolFamily) add(s span) {
	if f.pools == nil {
		f.pools = map[u128]u128{}
	}
	f.pools[s.lo] = s.hi
	f.used.addCoalesced(s, f.used.floor(s.lo))
}

// Reserve records an explicitly configured pool (any size; masked) and fails
// with ErrPoolOverlap, naming the existing pool, if it overlaps an allocated
// one. Use it also to restore allocated pools at start-up.
func (p *PoolAllocator) Reserve(prefix netip.Prefix) error {
	if !prefix.IsValid() {
		return fmt.Errorf("%w: %s", ErrInvalidPrefix, prefix)
	}
	prefix = prefix.Masked()
	if existing, ok := p.Overlaps(prefix); ok {
		return fmt.Errorf("%w: %s overlaps %s", ErrPoolOverlap, prefix, existing)
	}
	p.fams[famIndex(prefix.Addr().Is6())].add(prefixSpan(prefix))
	return nil
}

// Release frees a pool previously returned by Allocate or given to Reserve.
// Anything but an exact match (after masking) is ErrUnknownPool, which the
// caller may choose to ignore.
func (p *PoolAllocator) Release(prefix netip.Prefix) error {
	if !prefix.IsValid() {
		return fmt.Errorf("%w: %s", ErrUnknownPool, prefix)
	}
	prefix = prefix.Masked()
	f := &p.fams[famIndex(prefix.Addr().Is6())]
	s := prefixSpan(prefix)
	if hi, ok := f.pools[s.lo]; !ok || hi != s.hi {
		return fmt.Errorf("%w: %s", ErrUnknownPool, prefix)
	}
	delete(f.pools, s.lo)
	f.used.removeFrom(s, f.used.floor(s.lo))
	return nil
}

// Overlaps reports whether prefix overlaps an allocated pool and, if so,
// returns the lowest such pool. O(log n).
func (p *PoolAllocator) Overlaps(prefix netip.Prefix) (netip.Prefix, bool) {
	if !prefix.IsValid() {
		return netip.Prefix{}, false
	}
	is6 := prefix.Addr().Is6()
	f := &p.fams[famIndex(is6)]
	s := prefixSpan(prefix)
	// The lowest overlapping pool holds y, the first address of s that
	// lies in an allocated run: s.lo itself, or the start of the first run
	// after it.
	var y u128
	if r := f.used.floor(s.lo); r != nil && !r.hi.less(s.lo) {
		y = s.lo
	} else if r := f.used.ceil(s.lo); r != nil && !s.hi.less(r.lo) {
		y = r.lo
	} else {
		return netip.Prefix{}, false
	}
	bitLen := 32
	if is6 {
		bitLen = 128
	}
	for host := 0; host <= bitLen; host++ { // pools are aligned prefixes
		lo := y.andNot(lowMask(host))
		if hi, ok := f.pools[lo]; ok && !hi.less(y) {
			return spanPrefix(span{lo, hi}, !is6), true
		}
	}
	panic("alloc: coalesced pools and pool map disagree") // unreachable
}

// Pools iterates over the allocated pools, IPv4 first, each family in
// ascending order. The allocator must not be modified during iteration.
func (p *PoolAllocator) Pools() iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		for i := range p.fams {
			ok := true
			los := slices.SortedFunc(maps.Keys(p.fams[i].pools), u128.cmp)
			for _, lo := range los {
				if ok = yield(spanPrefix(span{lo, p.fams[i].pools[lo]}, i == 0)); !ok {
					break
				}
			}
			if !ok {
				return
			}
		}
	}
}

// Len returns the number of allocated pools.
func (p *PoolAllocator) Len() int { return len(p.fams[0].pools) + len(p.fams[1].pools) }
