package alloc

import (
	"encoding/binary"
	"math/big"
	"math/bits"
	"net/netip"
)

// u128 is an unsigned 128-bit integer. IPv4 addresses use the low 32 bits,
// IPv6 addresses all 128; families never share a structure, so the two
// encodings never meet. A struct of two words keeps everything allocation
// free, unlike math/big.
type u128 struct{ hi, lo uint64 }

var maxU128 = u128{^uint64(0), ^uint64(0)}

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) cmp(b u128) int {
	switch {
	case a.less(b):
		return -1
	case b.less(a):
		return 1
	}
	return 0
}

// inc and dec wrap around; callers check the bounds first.
func (a u128) inc() u128 {
	lo, c := bits.Add64(a.lo, 1, 0)
	return u128{a.hi + c, lo}
}

func (a u128) dec() u128 {
	lo, b := bits.Sub64(a.lo, 1, 0)
	return u128{a.hi - b, lo}
}

// add returns a+b and whether it overflowed.
func (a u128) add(b u128) (u128, bool) {
	lo, c := bits.Add64(a.lo, b.lo, 0)
	hi, c := bits.Add64(a.hi, b.hi, c)
	return u128{hi, lo}, c != 0
}

// sub returns a-b (wrapping).
func (a u128) sub(b u128) u128 {
	lo, br := bits.Sub64(a.lo, b.lo, 0)
	hi, _ := bits.Sub64(a.hi, b.hi, br)
	return u128{hi, lo}
}

func (a u128) or(b u128) u128     { return u128{a.hi | b.hi, a.lo | b.lo} }
func (a u128) andNot(b u128) u128 { return u128{a.hi &^ b.hi, a.lo &^ b.lo} }

// onesCount is the number of set bits; for a host mask it is the host-bit count.
func (a u128) onesCount() int { return bits.OnesCount64(a.hi) + bits.OnesCount64(a.lo) }

// lowMask returns a value with the low n bits set, 0 <= n <= 128.
func lowMask(n int) u128 {
	switch {
	case n <= 0:
		return u128{}
	case n < 64:
		return u128{0, 1<<uint(n) - 1}
	case n < 128:
		return u128{1<<uint(n-64) - 1, ^uint64(0)}
	}
	return maxU128
}

// big converts to a math/big integer (only used off the hot path).
func (a u128) big() *big.Int {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
	return new(big.Int).SetBytes(b[:])
}

// fromAddr maps an address to its integer value within its family.
func fromAddr(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// toAddr is the inverse of fromAddr; for IPv4 x must fit in 32 bits.
func toAddr(x u128, is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(x.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:], x.lo)
	return netip.AddrFrom16(b)
}

// prefixSpan returns the first and last address of a valid prefix.
func prefixSpan(p netip.Prefix) span {
	lo := fromAddr(p.Masked().Addr())
	return span{lo, lo.or(lowMask(p.Addr().BitLen() - p.Bits()))}
}

// spanPrefix is the inverse of prefixSpan for spans that are exactly one
// aligned prefix (as stored in the pool tree).
func spanPrefix(s span, is4 bool) netip.Prefix {
	bitLen := 128
	if is4 {
		bitLen = 32
	}
	return netip.PrefixFrom(toAddr(s.lo, is4), bitLen-s.hi.sub(s.lo).onesCount())
}
