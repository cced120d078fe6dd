package bridge

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/dockplug/dockplug/network"
)

// The packet rules, as plain values built from the state (pure, so they
// can be tested without a kernel) and rendered into nftables expressions by
// nft.go. String renders them in nft syntax for tests and logs.

// Chains of the driver's table (family inet).
const (
	chainForward     = "forward"     // filter, hook forward
	chainPrerouting  = "prerouting"  // nat, hook prerouting (dstnat)
	chainOutput      = "output"      // nat, hook output (dstnat): the host's own connections
	chainPostrouting = "postrouting" // nat, hook postrouting (srcnat)
)

type verdict int

const (
	vDrop verdict = iota
	vMasquerade
	vDNAT
)

type rule struct {
	chain    string
	iif      string // "" = any
	iifNot   bool
	oif      string
	oifNot   bool
	saddr    netip.Prefix // IPv4 only; zero = any
	daddr    netip.Addr   // zero = any
	localDst bool         // fib daddr type local
	ctDNAT   bool         // ct status dnat
	proto    network.Protocol
	dport    uint16
	verdict  verdict
	to       netip.AddrPort // for vDNAT
}

func (r rule) String() string {
	var b strings.Builder
	b.WriteString(r.chain + ":")
	ifm := func(key, name string, not bool) {
		if name == "" {
			return
		}
		op := ""
		if not {
			op = "!= "
		}
		fmt.Fprintf(&b, " %s %s%s", key, op, name)
	}
	ifm("iifname", r.iif, r.iifNot)
	ifm("oifname", r.oif, r.oifNot)
	if r.saddr.IsValid() {
		fmt.Fprintf(&b, " ip saddr %s", r.saddr)
	}
	if r.daddr.IsValid() {
		fmt.Fprintf(&b, " ip daddr %s", r.daddr)
	}
	if r.localDst {
		b.WriteString(" fib daddr type local")
	}
	if r.ctDNAT {
		b.WriteString(" ct status dnat")
	}
	if r.proto != 0 {
		fmt.Fprintf(&b, " %s dport %d", r.proto, r.dport)
	}
	switch r.verdict {
	case vDrop:
		b.WriteString(" drop")
	case vMasquerade:
		b.WriteString(" masquerade")
	case vDNAT:
		fmt.Fprintf(&b, " dnat ip to %s", r.to)
	}
	return b.String()
}

// buildRules is every rule the state calls for, in a stable order.
func buildRules(nets map[string]*netRecord, eps map[string]*epRecord) []rule {
	var out []rule
	for _, n := range sortedNets(nets) {
		br := n.Bridge
		if n.Internal {
			// Nothing enters or leaves the bridge through the host's
			// routing; traffic inside the bridge (and with the host on
			// the gateway address) stays possible.
			out = append(out,
				rule{chain: chainForward, iif: br, oif: br, oifNot: true, verdict: vDrop},
				rule{chain: chainForward, oif: br, iif: br, iifNot: true, verdict: vDrop})
			continue
		}
		if n.Masquerade {
			for _, s := range n.IPv4 {
				out = append(out, rule{chain: chainPostrouting, saddr: s.Pool, oif: br, oifNot: true, verdict: vMasquerade})
			}
		}
		// Published ports reached from the host on 127.0.0.1 leave with a
		// loopback source, which the container could not answer; and a
		// container reaching a published port of its own network must get
		// the answer through the host (hairpin).
		out = append(out, rule{chain: chainPostrouting, oif: br, saddr: netip.MustParsePrefix("127.0.0.0/8"), verdict: vMasquerade})
		for _, s := range n.IPv4 {
			out = append(out, rule{chain: chainPostrouting, oif: br, saddr: s.Pool, ctDNAT: true, verdict: vMasquerade})
		}
	}
	// Networks are isolated from each other, as docker's are.
	all := sortedNets(nets)
	for _, a := range all {
		for _, b := range all {
			if a != b {
				out = append(out, rule{chain: chainForward, iif: a.Bridge, oif: b.Bridge, verdict: vDrop})
			}
		}
	}
	for _, e := range sortedEps(eps) {
		n := nets[e.NetworkID]
		if n == nil || n.Internal || !e.Joined {
			continue
		}
		for _, p := range e.Ports {
			for _, chain := range []string{chainPrerouting, chainOutput} {
				r := rule{chain: chain, proto: p.Proto, dport: p.HostPort, verdict: vDNAT, to: netip.AddrPortFrom(p.IP, p.Port)}
				if p.HostIP.IsValid() {
					r.daddr = p.HostIP
				} else {
					r.localDst = true
				}
				out = append(out, r)
			}
		}
	}
	return out
}

func sortedNets(m map[string]*netRecord) []*netRecord {
	out := make([]*netRecord, 0, len(m))
	for _, n := range m {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func sortedEps(m map[string]*epRecord) []*epRecord {
	out := make([]*epRecord, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
