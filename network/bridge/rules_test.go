package bridge

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/dockplug/dockplug/network"
)

func TestBuildRules(t *testing.T) {
	nets := map[string]*netRecord{
		"a": {ID: "a", Bridge: "dn-a", Masquerade: true, ICC: true,
			IPv4: []subnet{{Pool: netip.MustParsePrefix("10.1.0.0/24")}}},
		"b": {ID: "b", Bridge: "dn-b", Internal: true,
			IPv4: []subnet{{Pool: netip.MustParsePrefix("10.2.0.0/24")}}},
		"c": {ID: "c", Bridge: "dn-c", Masquerade: false,
			IPv4: []subnet{{Pool: netip.MustParsePrefix("10.3.0.0/24")}}},
	}
	eps := map[string]*epRecord{
		"e1": {ID: "e1", NetworkID: "a", Joined: true, Ports: []portMap{
			{Proto: network.TCP, HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, IP: netip.MustParseAddr("10.1.0.2"), Port: 80},
			{Proto: network.UDP, HostPort: 5353, IP: netip.MustParseAddr("10.1.0.2"), Port: 53},
		}},
		"e2": {ID: "e2", NetworkID: "a", Joined: false, Ports: []portMap{ // left: no rules
			{Proto: network.TCP, HostPort: 9090, IP: netip.MustParseAddr("10.1.0.3"), Port: 80}}},
		"e3": {ID: "e3", NetworkID: "b", Joined: true, Ports: []portMap{ // internal: never published
			{Proto: network.TCP, HostPort: 9191, IP: netip.MustParseAddr("10.2.0.3"), Port: 80}}},
	}
	var got []string
	for _, r := range buildRules(nets, eps) {
		got = append(got, r.String())
		if _, err := r.exprs(); err != nil {
			t.Errorf("%s: %v", r, err)
		}
	}
	want := []string{
		"postrouting: oifname != dn-a ip saddr 10.1.0.0/24 masquerade",
		"postrouting: oifname dn-a ip saddr 127.0.0.0/8 masquerade",
		"postrouting: oifname dn-a ip saddr 10.1.0.0/24 ct status dnat masquerade",
		"forward: iifname dn-b oifname != dn-b drop",
		"forward: iifname != dn-b oifname dn-b drop",
		"postrouting: oifname dn-c ip saddr 127.0.0.0/8 masquerade",
		"postrouting: oifname dn-c ip saddr 10.3.0.0/24 ct status dnat masquerade",
		"forward: iifname dn-a oifname dn-b drop",
		"forward: iifname dn-a oifname dn-c drop",
		"forward: iifname dn-b oifname dn-a drop",
		"forward: iifname dn-b oifname dn-c drop",
		"forward: iifname dn-c oifname dn-a drop",
		"forward: iifname dn-c oifname dn-b drop",
		"prerouting: ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.1.0.2:80",
		"output: ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.1.0.2:80",
		"prerouting: fib daddr type local udp dport 5353 dnat ip to 10.1.0.2:53",
		"output: fib daddr type local udp dport 5353 dnat ip to 10.1.0.2:53",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rules:\n%q\nwant:\n%q", got, want)
	}
}

func TestRuleExprsRefuseIPv6(t *testing.T) {
	for _, r := range []rule{
		{chain: chainPostrouting, saddr: netip.MustParsePrefix("fd00::/64"), verdict: vMasquerade},
		{chain: chainPrerouting, proto: network.TCP, dport: 1, verdict: vDNAT, to: netip.MustParseAddrPort("[fd00::1]:80")},
		{chain: chainForward, verdict: verdict(99)},
	} {
		if _, err := r.exprs(); err == nil {
			t.Errorf("%s: rendered", r)
		}
	}
}
