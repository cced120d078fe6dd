package driver

import (
	"net/netip"
	"slices"

	"github.com/dockplug/dockplug/ipam/alloc"
)

// blockAlloc is one host's allocator for one global pool: the blocks of the
// pool it owns, with an alloc.Allocator each for the addresses taken in
// them, the gateway it never hands out dynamically and its serial cursor.
// It is pure (no store, no locking): the space decides what a block holds
// from the store, and the store decides whether a candidate is really free.
type blockAlloc struct {
	pool   netip.Prefix // the pool: specific addresses may lie anywhere in it
	rng    netip.Prefix // allocation range: sub-pool or pool
	bb     int          // block bits
	gw     netip.Addr   // the gateway address; never handed out dynamically
	blocks []*gBlock    // owned, by address
	claims int          // blocks added so far
	serial netip.Addr   // serial cursor: after the last serial allocation
}

// gBlock is one owned block.
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

// blockBitsFor is the block size used for allocation range r: the configured
// bits, smaller for small ranges so that a range has at least 16 blocks
// (but blocks of at least 4 addresses).
func blockBitsFor(r netip.Prefix, want int) int {
	host := r.Addr().BitLen() - r.Bits()
	return min(want, host, max(host-4, min(host, 2)))
}

// blockOf is the block a lies in.
func (ba *blockAlloc) blockOf(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen()-ba.bb).Masked()
}

// newBlock is the block starting at start with the addresses used taken
// (those outside the block ignored) and the gateway marked used; own is how
// many of them are this host's.
func (ba *blockAlloc) newBlock(start netip.Addr, key string, rev int64, used []netip.Addr, own int) (*gBlock, error) {
	blk := ba.blockOf(start)
	used = slices.DeleteFunc(slices.Clone(used), func(a netip.Addr) bool { return !blk.Contains(a) })
	a, err := alloc.Restore(ba.pool, blk, used)
	if err != nil {
		return nil, err
	}
	if ba.gw.IsValid() && blk.Contains(ba.gw) {
		a.AllocateSpecific(ba.gw) // ErrInUse if the gateway key exists: fine
	}
	return &gBlock{start: blk.Addr(), pfx: blk, key: key, rev: rev, a: a, own: own}, nil
}

// ownBlock is the owned block holding a, or nil.
func (ba *blockAlloc) ownBlock(a netip.Addr) *gBlock {
	i, ok := slices.BinarySearchFunc(ba.blocks, a, func(b *gBlock, a netip.Addr) int {
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
	return ba.blocks[i]
}

func (ba *blockAlloc) addBlock(b *gBlock) {
	i, _ := slices.BinarySearchFunc(ba.blocks, b.start, func(x *gBlock, a netip.Addr) int { return x.start.Compare(a) })
	ba.blocks = slices.Insert(ba.blocks, i, b)
	ba.claims++
}

func (ba *blockAlloc) dropBlock(b *gBlock) {
	ba.blocks = slices.DeleteFunc(ba.blocks, func(x *gBlock) bool { return x == b })
}

// use records that a is taken, if it lies in an owned block, and if mine
// counts it as this host's; it reports whether it counted it.
func (ba *blockAlloc) use(a netip.Addr, mine bool) bool {
	b := ba.ownBlock(a)
	if b == nil {
		return false
	}
	b.a.AllocateSpecific(a)
	if mine {
		b.own++
	}
	return mine
}

// free frees a in its owned block (mine: it was counted as this host's) and
// returns the block when it holds no address of this host any more, dropped
// from the owned blocks: the caller gives it back.
func (ba *blockAlloc) free(a netip.Addr, mine bool) *gBlock {
	b := ba.ownBlock(a)
	if b == nil {
		return nil
	}
	if a != ba.gw {
		b.a.Release(a)
		b.full = false
	}
	if mine {
		b.own = max(b.own-1, 0)
	}
	if b.own != 0 {
		return nil
	}
	ba.dropBlock(b)
	return b
}

// setGateway makes gw the gateway: the previous default one is free for
// endpoints again and gw is taken.
func (ba *blockAlloc) setGateway(gw netip.Addr) {
	if old := ba.gw; old != gw {
		ba.gw = gw
		if b := ba.ownBlock(old); b != nil {
			b.a.Release(old)
			b.full = false
		}
	}
	if b := ba.ownBlock(gw); b != nil {
		b.a.AllocateSpecific(gw)
	}
}

// pick takes a candidate from the owned blocks (marked used at once, so
// concurrent calls pick different ones) or returns a nil block. Serial
// allocation goes on after the cursor and does not wrap unless told.
func (ba *blockAlloc) pick(serial, wrap bool) (netip.Addr, *gBlock) {
	if !serial {
		for _, b := range ba.blocks {
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
	if ba.serial.IsValid() {
		i0, _ = slices.BinarySearchFunc(ba.blocks, ba.serial, func(b *gBlock, a netip.Addr) int {
			if b.pfx.Contains(a) {
				return 0
			}
			return b.start.Compare(a)
		})
	}
	n := len(ba.blocks)
	if !wrap {
		n -= i0
	}
	for k := range n {
		b := ba.blocks[(i0+k)%len(ba.blocks)]
		if b.full {
			continue
		}
		a, err := b.a.AllocateSerial()
		if err != nil {
			b.full = true
			continue
		}
		if !wrap && (a.Less(ba.serial) || (b.last.IsValid() && a.Less(b.last))) {
			b.a.Release(a) // the block's cursor wrapped: look further first
			continue
		}
		b.last, ba.serial = a, a.Next()
		b.own++
		return a, b
	}
	return netip.Addr{}, nil
}

// unclaimed is the first block start of the allocation range not in
// claimed (sorted), from the cursor's block if afterCursor; false: none.
func (ba *blockAlloc) unclaimed(claimed []netip.Addr, afterCursor bool) (netip.Addr, bool) {
	from := ba.rng.Addr()
	if afterCursor && ba.serial.IsValid() && ba.rng.Contains(ba.serial) {
		from = ba.blockOf(ba.serial).Addr()
	}
	return firstUnclaimed(claimed, from, alloc.LastAddr(ba.rng), uint64(1)<<ba.bb)
}

// firstUnclaimed returns the first block start >= from (wrapping to the
// start of the range is the caller's business) not in claimed (sorted).
func firstUnclaimed(claimed []netip.Addr, from, last netip.Addr, size uint64) (netip.Addr, bool) {
	c := from
	i, _ := slices.BinarySearchFunc(claimed, c, netip.Addr.Compare)
	for ; i < len(claimed) && claimed[i] == c; i++ {
		next, ok := alloc.AddAddr(c, size)
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
