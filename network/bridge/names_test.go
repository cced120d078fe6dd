package bridge

import (
	"net/netip"
	"testing"
)

func TestNames(t *testing.T) {
	id := "5016f300f68a1e152d3bdbacb07cba162ae72eea463b496763805c1cf094062a"
	if got := bridgeName(id); got != "dn-5016f300f68a" || len(got) > maxIfName {
		t.Errorf("bridgeName = %q", got)
	}
	h, p := vethNames(id)
	if h != "dnh5016f300f68a" || p != "dnc5016f300f68a" || len(h) > maxIfName || len(p) > maxIfName {
		t.Errorf("vethNames = %q, %q", h, p)
	}
	if got := bridgeName("abc"); got != "dn-abc" {
		t.Errorf("short ID: %q", got)
	}
}

func TestCheckIfName(t *testing.T) {
	for _, ok := range []string{"br0", "a", "exactly15bytes_", "dp-x.y"} {
		if err := checkIfName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "sixteen_bytes_xx", "a/b", "a:b", "a b", "a\x00"} {
		if err := checkIfName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAlias(t *testing.T) {
	kind, id, ok := parseAlias("dpn", netAlias("dpn", "N1"))
	if !ok || kind != "net" || id != "N1" {
		t.Errorf("net alias: %v %v %v", kind, id, ok)
	}
	kind, id, ok = parseAlias("dpn", epAlias("dpn", "E1"))
	if !ok || kind != "ep" || id != "E1" {
		t.Errorf("ep alias: %v %v %v", kind, id, ok)
	}
	for _, other := range []string{
		netAlias("dpn2", "N1"), // another instance: never ours
		"dockplug-net:dpn:", "dockplug-net:dpn:net:", "dockplug-net:dpn:vol:x", "", "something else",
	} {
		if _, _, ok := parseAlias("dpn", other); ok {
			t.Errorf("%q parsed as ours", other)
		}
	}
}

func TestMacFromIPv4(t *testing.T) {
	if got := macFromIPv4(netip.MustParseAddr("172.18.0.2")).String(); got != "02:42:ac:12:00:02" {
		t.Errorf("got %s", got)
	}
}
