package bridge

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The driver's nftables table: family inet, named after the plugin
// instance. It is replaced as a whole in one netlink transaction, so the
// kernel never sees half a rule set, and no other table is read or written.

func table(name string) *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: name}
}

// applyRules replaces the table name with rules.
func applyRules(name string, rules []rule) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	t := table(name)
	// Add-then-delete removes the table whether or not it existed, in the
	// same transaction that builds it again.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	chains := map[string]*nftables.Chain{
		chainForward: c.AddChain(&nftables.Chain{Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}),
		chainPrerouting: c.AddChain(&nftables.Chain{Name: chainPrerouting, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept}),
		chainOutput: c.AddChain(&nftables.Chain{Name: chainOutput, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept}),
		chainPostrouting: c.AddChain(&nftables.Chain{Name: chainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept}),
	}
	for _, r := range rules {
		ex, err := r.exprs()
		if err != nil {
			return fmt.Errorf("rule %q: %w", r, err)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: chains[r.chain], Exprs: ex})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table inet %s: %w", name, err)
	}
	return nil
}

// deleteTable removes the table if it exists.
func deleteTable(name string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	t := table(name)
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table inet %s: %w", name, err)
	}
	return nil
}

func ifname(s string) []byte {
	b := make([]byte, 16)
	copy(b, s)
	return b
}

func cmp(not bool, data []byte) *expr.Cmp {
	op := expr.CmpOpEq
	if not {
		op = expr.CmpOpNeq
	}
	return &expr.Cmp{Op: op, Register: 1, Data: data}
}

// exprs renders r for a table of family inet.
func (r rule) exprs() ([]expr.Any, error) {
	var ex []expr.Any
	if r.iif != "" {
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, cmp(r.iifNot, ifname(r.iif)))
	}
	if r.oif != "" {
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, cmp(r.oifNot, ifname(r.oif)))
	}
	ipv4 := r.saddr.IsValid() || r.daddr.IsValid() || r.verdict == vDNAT
	if ipv4 {
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, cmp(false, []byte{unix.NFPROTO_IPV4}))
	}
	if r.saddr.IsValid() {
		if !r.saddr.Addr().Is4() {
			return nil, errors.New("IPv6 source prefix")
		}
		p := r.saddr.Masked()
		mask := make([]byte, 4)
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		a := p.Addr().As4()
		ex = append(ex,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			cmp(false, a[:]))
	}
	if r.daddr.IsValid() {
		if !r.daddr.Is4() {
			return nil, errors.New("IPv6 destination")
		}
		a := r.daddr.As4()
		ex = append(ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}, cmp(false, a[:]))
	}
	if r.localDst {
		ex = append(ex, &expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			cmp(false, binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)))
	}
	if r.ctDNAT {
		ex = append(ex, &expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(0x20), // IPS_DST_NAT
				Xor:  make([]byte, 4)},
			cmp(true, make([]byte, 4)))
	}
	if r.proto != 0 {
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmp(false, []byte{byte(r.proto)}),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			cmp(false, binaryutil.BigEndian.PutUint16(r.dport)))
	}
	switch r.verdict {
	case vDrop:
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictDrop})
	case vMasquerade:
		ex = append(ex, &expr.Masq{})
	case vDNAT:
		if !r.to.Addr().Is4() {
			return nil, errors.New("IPv6 DNAT target")
		}
		a := r.to.Addr().As4()
		ex = append(ex,
			&expr.Immediate{Register: 1, Data: a[:]},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(r.to.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
	default:
		return nil, fmt.Errorf("unknown verdict %d", r.verdict)
	}
	return ex, nil
}
