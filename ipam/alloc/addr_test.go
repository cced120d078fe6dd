package alloc

import (
	"errors"
	"net/netip"
	"testing"
)

func TestReservedAndCheck(t *testing.T) {
	for _, c := range []struct {
		pool, addr string
		want       error
	}{
		{"10.0.0.0/24", "10.0.0.0", ErrReserved},
		{"10.0.0.0/24", "10.0.0.255", ErrReserved},
		{"10.0.0.0/24", "10.0.0.1", nil},
		{"10.0.0.0/24", "10.0.1.1", ErrOutOfRange},
		{"10.0.0.0/31", "10.0.0.0", nil},
		{"10.0.0.0/31", "10.0.0.1", nil},
		{"fd00::/64", "fd00::", ErrReserved},
		{"fd00::/64", "fd00::ffff:ffff:ffff:ffff", nil},
		{"fd00::/127", "fd00::", ErrReserved},
		{"fd00::/64", "10.0.0.1", ErrOutOfRange},
	} {
		pool, a := netip.MustParsePrefix(c.pool), netip.MustParseAddr(c.addr)
		err := Check(pool, a)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("Check(%s, %s) = %v, want %v", pool, a, err, c.want)
		}
		// The allocator applies the same rule.
		al, _ := New(pool, netip.Prefix{})
		if got := al.AllocateSpecific(a); c.want != nil && !errors.Is(got, c.want) || c.want == nil && got != nil {
			t.Errorf("AllocateSpecific(%s) in %s = %v, want %v", a, pool, got, c.want)
		}
	}
}

func TestAddrArithmetic(t *testing.T) {
	if got := LastAddr(netip.MustParsePrefix("10.1.2.0/23")); got != netip.MustParseAddr("10.1.3.255") {
		t.Errorf("LastAddr = %s", got)
	}
	if got := LastAddr(netip.MustParsePrefix("fd00::/64")); got != netip.MustParseAddr("fd00::ffff:ffff:ffff:ffff") {
		t.Errorf("LastAddr v6 = %s", got)
	}
	if got, ok := AddAddr(netip.MustParseAddr("10.0.0.200"), 64); !ok || got != netip.MustParseAddr("10.0.1.8") {
		t.Errorf("AddAddr = %s %v", got, ok)
	}
	if _, ok := AddAddr(netip.MustParseAddr("255.255.255.200"), 64); ok {
		t.Error("AddAddr left IPv4")
	}
	if got, ok := AddAddr(netip.MustParseAddr("fd00::ffff:ffff:ffff:ffff"), 1); !ok || got != netip.MustParseAddr("fd00:0:0:1::") {
		t.Errorf("AddAddr v6 carry = %s %v", got, ok)
	}
	if _, ok := AddAddr(netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 1); ok {
		t.Error("AddAddr left IPv6")
	}
}
