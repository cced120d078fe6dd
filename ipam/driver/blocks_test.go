package driver

import (
	"net/netip"
	"testing"
)

// The block allocator alone: no store.

func testBlocks(t *testing.T, pool string, bb int) *blockAlloc {
	t.Helper()
	p := netip.MustParsePrefix(pool)
	return &blockAlloc{pool: p, rng: p, bb: bb, gw: p.Addr().Next()}
}

func addTestBlock(t *testing.T, ba *blockAlloc, start string, used ...string) *gBlock {
	t.Helper()
	var u []netip.Addr
	for _, s := range used {
		u = append(u, netip.MustParseAddr(s))
	}
	b, err := ba.newBlock(netip.MustParseAddr(start), "k/"+start, 1, u, len(u))
	if err != nil {
		t.Fatal(err)
	}
	ba.addBlock(b)
	return b
}

func TestBlocksPickSkipsReservedGatewayAndUsed(t *testing.T) {
	ba := testBlocks(t, "10.0.0.0/24", 4) // blocks of 16
	addTestBlock(t, ba, "10.0.0.16")
	addTestBlock(t, ba, "10.0.0.0", "10.0.0.2") // added out of order: kept sorted
	seen := map[netip.Addr]bool{}
	for range 29 { // 16-1 (network) -1 (gateway) -1 (used) + 16
		a, b := ba.pick(false, false)
		if b == nil {
			t.Fatalf("exhausted after %d", len(seen))
		}
		if seen[a] || !b.pfx.Contains(a) {
			t.Fatalf("picked %s in %s twice or outside", a, b.pfx)
		}
		seen[a] = true
	}
	for _, a := range []string{"10.0.0.0", "10.0.0.1", "10.0.0.2"} {
		if seen[netip.MustParseAddr(a)] {
			t.Fatalf("handed out %s", a)
		}
	}
	if _, b := ba.pick(false, false); b != nil {
		t.Fatal("picked from full blocks")
	}
	if first := ba.blocks[0].start; first != netip.MustParseAddr("10.0.0.0") {
		t.Fatalf("blocks not sorted: first %s", first)
	}
}

func TestBlocksSerialCursorAndWrap(t *testing.T) {
	ba := testBlocks(t, "10.0.0.0/24", 2) // blocks of 4
	addTestBlock(t, ba, "10.0.0.4")
	addTestBlock(t, ba, "10.0.0.8")
	var got []string
	for range 8 {
		a, b := ba.pick(true, false)
		if b == nil {
			break
		}
		got = append(got, a.String())
	}
	if len(got) != 8 || got[0] != "10.0.0.4" || got[7] != "10.0.0.11" {
		t.Fatalf("serial picks %v", got)
	}
	// Free one behind the cursor: not picked again until wrapping.
	ba.free(netip.MustParseAddr("10.0.0.5"), true)
	if _, b := ba.pick(true, false); b != nil {
		t.Fatal("serial allocation went behind the cursor without wrapping")
	}
	if a, b := ba.pick(true, true); b == nil || a != netip.MustParseAddr("10.0.0.5") {
		t.Fatalf("wrapped pick %s %v", a, b)
	}
}

func TestBlocksFreeGivesBackEmptyBlock(t *testing.T) {
	ba := testBlocks(t, "10.0.0.0/24", 4)
	b := addTestBlock(t, ba, "10.0.0.32")
	x, _ := ba.pick(false, false)
	y, _ := ba.pick(false, false)
	if b.own != 2 {
		t.Fatalf("own %d", b.own)
	}
	if ba.free(x, true) != nil {
		t.Fatal("block given back while holding an address")
	}
	if got := ba.free(y, true); got != b || ba.ownBlock(y) != nil {
		t.Fatalf("empty block not given back: %v", got)
	}
	// A counted address outside the owned blocks is nobody's business here.
	if ba.use(netip.MustParseAddr("10.0.0.200"), true) || ba.free(netip.MustParseAddr("10.0.0.200"), true) != nil {
		t.Fatal("address outside owned blocks counted")
	}
}

func TestBlocksSetGatewayFreesDefault(t *testing.T) {
	ba := testBlocks(t, "10.0.0.0/24", 4)
	b := addTestBlock(t, ba, "10.0.0.0")
	ba.setGateway(netip.MustParseAddr("10.0.0.9"))
	if b.a.IsAllocated(netip.MustParseAddr("10.0.0.1")) || !b.a.IsAllocated(netip.MustParseAddr("10.0.0.9")) {
		t.Fatal("default gateway not freed or new one not taken")
	}
	if a, _ := ba.pick(false, false); a != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("first pick %s, want the freed default gateway", a)
	}
}

func TestBlocksUnclaimed(t *testing.T) {
	ba := testBlocks(t, "10.0.0.0/26", 4) // 4 blocks of 16
	claimed := []netip.Addr{netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.0.0.16"), netip.MustParseAddr("10.0.0.48")}
	if a, ok := ba.unclaimed(claimed, false); !ok || a != netip.MustParseAddr("10.0.0.32") {
		t.Fatalf("unclaimed %s %v", a, ok)
	}
	ba.serial = netip.MustParseAddr("10.0.0.50")
	if _, ok := ba.unclaimed(claimed, true); ok {
		t.Fatal("found a block after the cursor")
	}
	all := []netip.Addr{claimed[0], claimed[1], netip.MustParseAddr("10.0.0.32"), claimed[2]}
	if _, ok := ba.unclaimed(all, false); ok {
		t.Fatal("found a block in a fully claimed range")
	}
	v6 := testBlocks(t, "fd00::/64", 6)
	if a, ok := v6.unclaimed([]netip.Addr{netip.MustParseAddr("fd00::")}, false); !ok || a != netip.MustParseAddr("fd00::40") {
		t.Fatalf("v6 unclaimed %s %v", a, ok)
	}
}
