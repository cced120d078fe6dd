package bridge

import (
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/dockplug/dockplug/network"
)

var ip = netip.MustParseAddr("10.1.0.2")

func TestParseBindings(t *testing.T) {
	def := netip.MustParseAddr("127.0.0.1")
	in := []network.PortBinding{
		{Proto: network.TCP, Port: 80}, // -p 80: random, default host IP
		{Proto: network.TCP, Port: 81, HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 8081, HostPortEnd: 8081},
		{Proto: network.UDP, Port: 53, HostPort: 5300, HostPortEnd: 5310},                 // a range to choose from
		{Proto: network.TCP, Port: 82, HostIP: netip.MustParseAddr("::"), HostPort: 8082}, // IPv6: skipped
	}
	got, skipped, err := parseBindings(in, ip, def)
	if err != nil {
		t.Fatal(err)
	}
	want := []wanted{
		{Proto: network.TCP, HostIP: def, IP: ip, Port: 80},
		{Proto: network.TCP, HostLo: 8081, HostHi: 8081, IP: ip, Port: 81}, // 0.0.0.0 given: every address
		{Proto: network.UDP, HostIP: def, HostLo: 5300, HostHi: 5310, IP: ip, Port: 53},
	}
	if len(got) != len(want) || len(skipped) != 1 {
		t.Fatalf("got %+v, skipped %v", got, skipped)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []network.PortBinding{
		{Proto: network.ICMP, Port: 1},
		{Proto: network.TCP, Port: 0, HostPort: 1},
		{Proto: network.TCP, Port: 80, HostPort: 0, HostPortEnd: 90},
	} {
		if _, _, err := parseBindings([]network.PortBinding{bad}, ip, netip.Addr{}); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestPickTakenPortAndRange(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := uint16(l.Addr().(*net.TCPAddr).Port)
	lo := netip.MustParseAddr("127.0.0.1")
	rnd := rand.New(rand.NewPCG(1, 2))

	_, _, err = pick(wanted{Proto: network.TCP, HostIP: lo, HostLo: taken, HostHi: taken, IP: ip, Port: 80}, rnd)
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Errorf("taken port: %v", err)
	}
	// Every address conflicts with a listener on one of them.
	if _, _, err := pick(wanted{Proto: network.TCP, HostLo: taken, HostHi: taken, IP: ip, Port: 80}, rnd); err == nil {
		t.Error("0.0.0.0 on a port taken on 127.0.0.1: no error")
	}
	// A range skips the taken port, and the reservation holds the port.
	p, r, err := pick(wanted{Proto: network.TCP, HostIP: lo, HostLo: taken, HostHi: taken + 1, IP: ip, Port: 80}, rnd)
	if err != nil {
		t.Skipf("port %d taken too: %v", taken+1, err)
	}
	defer r.close()
	if p.HostPort != taken+1 {
		t.Errorf("range: picked %d, want %d", p.HostPort, taken+1)
	}
	if l2, err := net.Listen("tcp4", p.String()[:strings.Index(p.String(), "->")]); err == nil {
		l2.Close()
		t.Errorf("a reserved port could be listened on")
	}
	// Random ports come from the ephemeral range.
	p, r2, err := pick(wanted{Proto: network.UDP, HostIP: lo, IP: ip, Port: 53}, rnd)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.close()
	if a, z := ephemeralRange(); p.HostPort < a || p.HostPort > z {
		t.Errorf("random port %d outside %d-%d", p.HostPort, a, z)
	}
	if _, err := reserve(network.TCP, netip.MustParseAddr("192.0.2.1"), 1); err == nil ||
		!strings.Contains(bindError(network.TCP, netip.MustParseAddr("192.0.2.1"), 1, err).Error(), "not an address of this host") {
		t.Errorf("foreign host IP: %v", err)
	}
}

// FuzzPortMap: whatever the daemon's port map decodes to, validation
// never panics and accepted bindings are publishable.
func FuzzPortMap(f *testing.F) {
	f.Add(`[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":0,"HostPortEnd":0}]`)
	f.Add(`[{"Proto":17,"IP":"10.0.0.2","Port":53,"HostIP":"127.0.0.1","HostPort":5353,"HostPortEnd":5360}]`)
	f.Add(`[{"Proto":6,"Port":80,"HostIP":"::","HostPort":8080,"HostPortEnd":8080}]`)
	f.Add(`{"Proto":6}`)
	f.Fuzz(func(t *testing.T, s string) {
		var v any
		if json.Unmarshal([]byte(s), &v) != nil {
			return
		}
		pm, err := network.PortMapOption(map[string]any{network.OptionPortMap: v})
		if err != nil {
			return
		}
		ws, _, err := parseBindings(pm, ip, netip.Addr{})
		if err != nil {
			return
		}
		for _, w := range ws {
			if w.Port == 0 || w.HostHi < w.HostLo || (w.HostLo == 0 && w.HostHi != 0) || (w.HostIP.IsValid() && !w.HostIP.Is4()) {
				t.Errorf("accepted %+v", w)
			}
			if _, err := (rule{chain: chainPrerouting, proto: w.Proto, dport: 1, verdict: vDNAT, to: netip.AddrPortFrom(w.IP, w.Port)}).exprs(); err != nil {
				t.Errorf("%+v: %v", w, err)
			}
		}
	})
}
