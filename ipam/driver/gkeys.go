package driver

// The global space's key schema and records (see global.go).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store"
)

// gPoolRecord is a pool as stored at pools/<cidr>.
type gPoolRecord struct {
	ID        string            `json:"id"`
	Pool      netip.Prefix      `json:"pool"`
	SubPool   netip.Prefix      `json:"subPool,omitzero"`
	Dynamic   bool              `json:"dynamic,omitempty"`
	Gateway   netip.Addr        `json:"gateway,omitzero"`
	Hosts     map[string]int    `json:"hosts"`
	BlockBits int               `json:"blockBits"`
	CreatedAt time.Time         `json:"createdAt"`
	Options   map[string]string `json:"options,omitempty"`
}

// gBlockRecord is a block as stored at blocks/<cidr>/<start>.
type gBlockRecord struct {
	Host  string       `json:"host"`
	Block netip.Prefix `json:"block"`
	At    time.Time    `json:"at"`
	Nonce string       `json:"nonce"`
}

// gAddrRecord is an address as stored at addrs/<cidr>/<address>.
type gAddrRecord struct {
	AddrInfo
	// Hosts counts the holders of a gateway or aux address, by host.
	Hosts map[string]int `json:"hosts,omitempty"`
	// Req is the nonce of the request that created the record.
	Req string `json:"req,omitempty"`
}

func cidrSeg(p netip.Prefix) string { return strings.ReplaceAll(p.String(), "/", "_") }

func hexAddr(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return hex.EncodeToString(b[:])
	}
	b := a.As16()
	return hex.EncodeToString(b[:])
}

func parseHexAddr(s string) (netip.Addr, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return netip.Addr{}, err
	}
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b)), nil
	case 16:
		return netip.AddrFrom16([16]byte(b)), nil
	}
	return netip.Addr{}, fmt.Errorf("bad address key %q", s)
}

func (s *globalSpace) poolKey(seg string) string             { return s.prefix + "pools/" + seg }
func (s *globalSpace) addrDir(seg string) string             { return s.prefix + "addrs/" + seg + "/" }
func (s *globalSpace) blockDir(seg string) string            { return s.prefix + "blocks/" + seg + "/" }
func (p *gPool) addrKey(s *globalSpace, a netip.Addr) string { return s.addrDir(p.seg) + hexAddr(a) }

// addrRange is the key range [from, to) of the address records of blk.
func (p *gPool) addrRange(s *globalSpace, blk netip.Prefix) (from, to string) {
	return p.addrKey(s, blk.Addr()), p.addrKey(s, alloc.LastAddr(blk)) + "\x00"
}

// listPrefix lists the keys under prefix at rev (0: the latest).
func (s *globalSpace) listPrefix(ctx context.Context, prefix string, rev int64) ([]store.Entry, int64, error) {
	return s.kv.List(ctx, prefix, store.PrefixEnd(prefix), rev)
}

func newNonce() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (r *gPoolRecord) info() PoolInfo {
	info := PoolInfo{ID: r.ID, Space: GlobalSpace, Pool: r.Pool, SubPool: r.SubPool, Dynamic: r.Dynamic,
		Gateway: r.Gateway, CreatedAt: r.CreatedAt}
	for h, n := range r.Hosts {
		if n > 0 {
			info.Hosts = append(info.Hosts, h)
		}
	}
	sort.Strings(info.Hosts)
	return info
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain data types are marshalled
	}
	return b
}

// parsePoolID splits "global/<pool>[/<sub-pool>]".
func parsePoolID(id string) (pool, sub netip.Prefix, err error) {
	parts := strings.Split(id, "/")
	if parts[0] != GlobalSpace || (len(parts) != 3 && len(parts) != 5) {
		return pool, sub, plugin.BadRequest("malformed pool ID %q of the global address space", id)
	}
	if pool, err = netip.ParsePrefix(parts[1] + "/" + parts[2]); err != nil {
		return pool, sub, plugin.BadRequest("malformed pool ID %q: %v", id, err)
	}
	if len(parts) == 5 {
		if sub, err = netip.ParsePrefix(parts[3] + "/" + parts[4]); err != nil {
			return pool, sub, plugin.BadRequest("malformed pool ID %q: %v", id, err)
		}
	}
	return pool, sub, nil
}

func globalPoolID(pool, sub netip.Prefix) string {
	id := GlobalSpace + "/" + pool.String()
	if sub.IsValid() {
		id += "/" + sub.String()
	}
	return id
}

func cmpPrefix(p netip.Prefix) string {
	if !p.IsValid() {
		return "(none)"
	}
	return p.String()
}

func liveCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m)+1)
	for k, v := range m {
		if v > 0 {
			out[k] = v
		}
	}
	return out
}

func mapKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k, v := range m {
			if v > 0 && !yield(k) {
				return
			}
		}
	}
}

func holder(a netip.Addr, r *gAddrRecord) string {
	var parts []string
	if r.Gateway {
		parts = append(parts, "the gateway")
	}
	if r.Aux {
		parts = append(parts, "an aux address")
	}
	if r.Endpoint != "" {
		parts = append(parts, "endpoint "+r.Endpoint)
	}
	if r.Host != "" {
		parts = append(parts, "host "+r.Host)
	}
	if len(parts) == 0 {
		return a.String()
	}
	return a.String() + " (" + strings.Join(parts, ", ") + ")"
}
