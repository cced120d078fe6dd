package alloc

import (
	"fmt"
	"net/netip"
)

// reservedEnds is the reserved-address rule, the one copy of it: the
// network address of IPv4 pools larger than /31 and of every IPv6 pool (the
// subnet-router anycast address), and the broadcast address of IPv4 pools
// larger than /31.
func reservedEnds(pool netip.Prefix) (network, broadcast bool) {
	is4 := pool.Addr().Is4()
	hostBits := pool.Addr().BitLen() - pool.Bits()
	return !is4 || hostBits >= 2, is4 && hostBits >= 2
}

// Reserved reports whether a is one of pool's reserved addresses (see New),
// which are never handed out.
func Reserved(pool netip.Prefix, a netip.Addr) bool {
	pool = pool.Masked()
	network, broadcast := reservedEnds(pool)
	return (network && a == pool.Addr()) || (broadcast && a == LastAddr(pool))
}

// Check reports why a can never be allocated in pool: ErrOutOfRange or
// ErrReserved (wrapped), or nil.
func Check(pool netip.Prefix, a netip.Addr) error {
	pool = pool.Masked()
	if !pool.Contains(a) {
		return fmt.Errorf("%w: %s not in %s", ErrOutOfRange, a, pool)
	}
	if Reserved(pool, a) {
		return fmt.Errorf("%w: %s", ErrReserved, a)
	}
	return nil
}

// LastAddr is the last address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	return toAddr(prefixSpan(p).hi, p.Addr().Is4())
}

// AddAddr returns a+n; false if that leaves a's address family.
func AddAddr(a netip.Addr, n uint64) (netip.Addr, bool) {
	x, carry := fromAddr(a).add(u128{0, n})
	if carry || (a.Is4() && x.lo > 0xffffffff) {
		return netip.Addr{}, false
	}
	return toAddr(x, a.Is4()), true
}
