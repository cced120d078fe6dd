package linearizability

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/driver"
	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/store/etcd/etcdtest"
)

// The sequential model. Addresses: each address is held or free; a
// RequestAddress that returned X needs X free and makes it held, a
// ReleaseAddress of X makes it free. Pool membership (the second pool,
// joined and left with RequestPool and ReleasePool): each host holds it or
// not; a join answered OK needs the host outside, one answered 409 (held
// already) needs it inside, and so on. A call that failed or timed out may
// have been applied or not: it returns at infinity and its effect is
// optional. A RequestAddress that failed names no address, so it
// constrains nothing and is left out (counted as ambiguous).

type opKind int

const (
	opRequest opKind = iota // RequestAddress, dynamic
	opRelease               // ReleaseAddress
	opJoin                  // RequestPool of the second pool
	opLeave                 // ReleasePool of the second pool
)

func (k opKind) String() string {
	return [...]string{"RequestAddress", "ReleaseAddress", "RequestPool", "ReleasePool"}[k]
}

type linInput struct {
	Kind opKind
	Host int
	Addr netip.Addr // opRelease
}

type linOutput struct {
	Addr    netip.Addr // opRequest
	Status  int        // 0: OK, else the plugin's status (409, 404)
	Unknown bool       // failed or timed out: possibly applied
}

// partitionKey: addresses are independent of one another, and hosts'
// memberships of each other: porcupine checks each alone.
func partitionKey(in linInput, out linOutput) string {
	switch in.Kind {
	case opRequest:
		return "addr " + out.Addr.String()
	case opRelease:
		return "addr " + in.Addr.String()
	}
	return fmt.Sprintf("pool host %d", in.Host)
}

var linModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := partitionKey(op.Input.(linInput), op.Output.(linOutput))
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() []any { return []any{false} }, // address free / host outside
	Step: func(state, input, output any) []any {
		held, in, out := state.(bool), input.(linInput), output.(linOutput)
		switch in.Kind {
		case opRequest:
			if held {
				return nil // handed out while held
			}
			return []any{true}
		case opRelease:
			if out.Unknown {
				return []any{held, false}
			}
			return []any{false}
		case opJoin:
			switch {
			case out.Unknown && held:
				return []any{true}
			case out.Unknown:
				return []any{false, true}
			case out.Status == 0 && !held, out.Status == 409 && held:
				return []any{true}
			}
			return nil
		case opLeave:
			switch {
			case out.Unknown:
				return []any{held, false}
			case out.Status == 0 && held:
				return []any{false}
			case out.Status == 404 && !held:
				return []any{false}
			}
			return nil
		}
		return nil
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		s := fmt.Sprintf("host %d %s", in.Host, in.Kind)
		if in.Kind == opRelease {
			s += " " + in.Addr.String()
		}
		switch {
		case out.Unknown:
			return s + " -> ?"
		case in.Kind == opRequest:
			return s + " -> " + out.Addr.String()
		}
		return fmt.Sprintf("%s -> %d", s, out.Status)
	},
}

// history records operations from many goroutines.
type history struct {
	mu        sync.Mutex
	ops       []porcupine.Operation
	ambiguous map[opKind]int
	errs      map[string]int // ambiguous errors by message prefix, for the log
}

func (h *history) add(client int, in linInput, call int64, out linOutput, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if out.Unknown {
		h.ambiguous[in.Kind]++
		if in.Kind == opRequest {
			return // names no address: constrains nothing
		}
		ret = math.MaxInt64
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

func (h *history) noteErr(err error) {
	msg := err.Error()
	if len(msg) > 70 {
		msg = msg[:70]
	}
	h.mu.Lock()
	h.errs[msg]++
	h.mu.Unlock()
}

const (
	mainPool   = "10.180.0.0/16"
	secondPool = "10.181.0.0/24"
)

// held is an address a worker was given and has not released.
type held struct {
	addr     netip.Addr
	endpoint string
}

// cluster is the 3-member etcd cluster; plugins reach each member through
// a proxy, which can cut their connections.
type cluster struct {
	members   []*etcdtest.Server
	proxies   []*proxy
	endpoints string // the proxies'
}

func startCluster(t *testing.T) *cluster {
	c := &cluster{members: etcdtest.StartCluster(t, 3)}
	var eps []string
	for _, m := range c.members {
		u, err := url.Parse(m.Endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		p := startProxy(t, u.Host)
		c.proxies = append(c.proxies, p)
		eps = append(eps, p.addr())
	}
	c.endpoints = strings.Join(eps, ",")
	return c
}

func (c *cluster) leader() *etcdtest.Server {
	for _, m := range c.members {
		if m.IsLeader() {
			return m
		}
	}
	return nil
}

func startProcs(t *testing.T, ctx context.Context, c *cluster, n int, tag string) []*proc {
	root, err := os.MkdirTemp("/tmp", "dpl") // short: socket paths stay under 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	procs := make([]*proc, n)
	for i := range procs {
		procs[i] = newProc(t, root, fmt.Sprintf("%sipam%d", tag, i), fmt.Sprintf("%shost-%d", tag, i), c.endpoints)
		if err := procs[i].start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return procs
}

// TestGlobalIPAMLinearizable is issue 10 section 2.
func TestGlobalIPAMLinearizable(t *testing.T) {
	needBinary(t)
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-lin.seed), duration %s, %d workers per process", seed, *flagDuration, *flagWorkers)
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx := context.Background()
	cl := startCluster(t)
	procs := startProcs(t, ctx, cl, 3, "")

	// Every host joins the main pool (set-up, not checked).
	var poolID string
	for _, p := range procs {
		r, err := p.client(t).RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: driver.GlobalSpace, Pool: mainPool})
		if err != nil {
			t.Fatalf("%s joins %s: %v", p.name, mainPool, err)
		}
		poolID = r.PoolID
	}

	h := &history{ambiguous: map[opKind]int{}, errs: map[string]int{}}
	start := time.Now()
	deadline := start.Add(*flagDuration)
	var wg sync.WaitGroup
	var mu sync.Mutex
	final := map[int][]held{} // per client: what it holds at the end
	var seq atomic.Int64
	for pi, p := range procs {
		for w := range *flagWorkers {
			client := pi**flagWorkers + w
			c := p.client(t)
			wrng := rand.New(rand.NewPCG(seed, uint64(client)+2))
			wg.Go(func() {
				var mine []held
				member := false // what this worker believes of its host in the second pool
				for time.Now().Before(deadline) {
					cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
					r := wrng.Float64()
					switch {
					case w == 0 && r < 0.08: // pool calls, one worker per host
						in := linInput{Kind: opJoin, Host: pi}
						var err error
						call := time.Now().UnixNano()
						if member {
							in.Kind = opLeave
							err = c.ReleasePool(cctx, &ipam.ReleasePoolRequest{PoolID: driver.GlobalSpace + "/" + secondPool})
						} else {
							_, err = c.RequestPool(cctx, &ipam.RequestPoolRequest{AddressSpace: driver.GlobalSpace, Pool: secondPool})
						}
						ret := time.Now().UnixNano()
						out := linOutput{}
						switch st := plugin.StatusOf(err); {
						case err == nil:
							member = in.Kind == opJoin
						case st == 409 && in.Kind == opJoin:
							out.Status, member = 409, true
						case st == 404 && in.Kind == opLeave:
							out.Status, member = 404, false
						default:
							out.Unknown = true
							member = wrng.IntN(2) == 0
							h.noteErr(err)
						}
						h.add(client, in, call, out, ret)
					case len(mine) == 0 || (len(mine) < 40 && r < 0.55):
						ep := fmt.Sprintf("c%d-%d", client, seq.Add(1))
						call := time.Now().UnixNano()
						resp, err := c.RequestAddress(cctx, &ipam.RequestAddressRequest{PoolID: poolID,
							Options: map[string]string{ipam.OptEndpointName: ep}})
						ret := time.Now().UnixNano()
						if err != nil {
							h.noteErr(err)
							h.add(client, linInput{Kind: opRequest, Host: pi}, call, linOutput{Unknown: true}, ret)
							break
						}
						pfx, perr := netip.ParsePrefix(resp.Address)
						if perr != nil {
							h.noteErr(perr)
							h.add(client, linInput{Kind: opRequest, Host: pi}, call, linOutput{Unknown: true}, ret)
							break
						}
						h.add(client, linInput{Kind: opRequest, Host: pi}, call, linOutput{Addr: pfx.Addr()}, ret)
						mine = append(mine, held{pfx.Addr(), ep})
					default:
						i := wrng.IntN(len(mine))
						x := mine[i]
						mine = append(mine[:i], mine[i+1:]...)
						call := time.Now().UnixNano()
						err := c.ReleaseAddress(cctx, &ipam.ReleaseAddressRequest{PoolID: poolID, Address: x.addr.String()})
						ret := time.Now().UnixNano()
						out := linOutput{Unknown: err != nil}
						if err != nil {
							h.noteErr(err)
						}
						h.add(client, linInput{Kind: opRelease, Host: pi, Addr: x.addr}, call, out, ret)
					}
					cancel()
				}
				mu.Lock()
				final[client] = mine
				mu.Unlock()
			})
		}
	}

	// Faults, one at a time, from this goroutine: restart an etcd member
	// (every other time the leader), kill -9 a plugin and start it again, or
	// cut every connection between plugins and etcd (replies lost).
	faults := map[string]int{}
	cut := 0
	for i := 0; time.Until(deadline) > 2*time.Second; i++ {
		time.Sleep(time.Duration(float64(*flagFaultGap) * (0.5 + rng.Float64())))
		switch i % 4 {
		case 3:
			for _, p := range cl.proxies {
				cut += p.cut()
			}
			faults["connections cut"]++
			continue
		}
		switch i % 4 {
		case 0, 1:
			m := cl.members[rng.IntN(len(cl.members))]
			kind := "etcd member restart"
			if i%4 == 1 {
				if l := cl.leader(); l != nil {
					m, kind = l, "etcd leader restart"
				}
			}
			m.Stop()
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
			m.Restart()
			faults[kind]++
		case 2:
			p := procs[rng.IntN(len(procs))]
			p.kill()
			if err := p.start(ctx); err != nil {
				t.Fatalf("restart after kill -9: %v", err)
			}
			faults["plugin kill -9"]++
		}
	}
	wg.Wait()
	elapsed := time.Since(start)

	// The check.
	res, _ := porcupine.CheckOperationsVerbose(linModel.ToModel(), h.ops, 5*time.Minute)
	nfaults := 0
	for _, n := range faults {
		nfaults += n
	}
	definite := 0
	for _, op := range h.ops {
		if !op.Output.(linOutput).Unknown {
			definite++
		}
	}
	violations := 0
	if res == porcupine.Illegal {
		violations = 1
		t.Errorf("history not linearizable (porcupine: %s)", res)
	} else if res != porcupine.Ok {
		t.Errorf("porcupine did not finish: %s", res)
	}

	// The final state in etcd: every address a client holds at the end is
	// stored for its endpoint and host, and no address is held twice.
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcdtest.ClusterEndpoints(cl.members), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, driver.DefaultGlobalPrefix+"addrs/"+strings.ReplaceAll(mainPool, "/", "_")+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		Address  netip.Addr `json:"address"`
		Endpoint string     `json:"endpoint"`
		Host     string     `json:"host"`
	}
	stored := map[netip.Addr]rec{}
	for _, kv := range resp.Kvs {
		var r rec
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			t.Fatalf("record %s: %v", kv.Key, err)
		}
		stored[r.Address] = r
	}
	holders := map[netip.Addr][]string{}
	lost, heldAtEnd := 0, 0
	for client, hs := range final {
		host := fmt.Sprintf("host-%d", client / *flagWorkers)
		for _, x := range hs {
			heldAtEnd++
			holders[x.addr] = append(holders[x.addr], x.endpoint)
			if r, ok := stored[x.addr]; !ok || r.Endpoint != x.endpoint || r.Host != host {
				lost++
				t.Errorf("%s held by %s on %s: stored as %+v (present %v)", x.addr, x.endpoint, host, r, ok)
			}
		}
	}
	duplicates := 0
	for a, eps := range holders {
		if len(eps) > 1 {
			duplicates++
			t.Errorf("%s held by %v at the end", a, eps)
		}
	}
	var errs []string
	for m, n := range h.errs {
		errs = append(errs, fmt.Sprintf("%d× %s", n, m))
	}
	sort.Strings(errs)
	t.Logf("errors of ambiguous calls: %s; %d plugin-etcd connections cut", strings.Join(errs, "; "), cut)
	t.Logf("linearizability: %d operations checked (%d definite, %d possibly applied), %d ambiguous RequestAddress left out; "+
		"%d faults %v in %s; porcupine %s, %d violations; final etcd state: %d addresses held, %d stored, %d lost, %d duplicates",
		len(h.ops), definite, len(h.ops)-definite, h.ambiguous[opRequest], nfaults, faults, elapsed.Round(time.Second),
		res, violations, heldAtEnd, len(stored), lost, duplicates)
	if definite < 100 {
		t.Errorf("only %d definite operations: the run checked too little", definite)
	}
}

// TestGlobalThroughput measures global allocations per second with 1, 3
// and 6 plugin processes (real binaries, real sockets) sharing a pool on
// the 3-member cluster, 8 concurrent clients per process (flag-gated:
// -lin.bench; no faults).
func TestGlobalThroughput(t *testing.T) {
	needBinary(t)
	if !*flagBench {
		t.Skip("throughput figures: -lin.bench")
	}
	ctx := context.Background()
	cl := startCluster(t)
	const clients = 8
	for i, n := range []int{1, 3, 6} {
		procs := startProcs(t, ctx, cl, n, fmt.Sprintf("b%d", n))
		pool := fmt.Sprintf("10.%d.0.0/16", 190+i)
		var poolID string
		for _, p := range procs {
			r, err := p.client(t).RequestPool(ctx, &ipam.RequestPoolRequest{AddressSpace: driver.GlobalSpace, Pool: pool})
			if err != nil {
				t.Fatal(err)
			}
			poolID = r.PoolID
		}
		var ok, failed atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		deadline := start.Add(*flagBenchDur)
		for _, p := range procs {
			for range clients {
				c := p.client(t)
				wg.Go(func() {
					for time.Now().Before(deadline) {
						if _, err := c.RequestAddress(ctx, &ipam.RequestAddressRequest{PoolID: poolID}); err != nil {
							failed.Add(1)
							continue
						}
						ok.Add(1)
					}
				})
			}
		}
		wg.Wait()
		el := time.Since(start)
		t.Logf("%d processes x %d clients: %.0f global allocations/s (%d in %s, %d failed)", n, clients,
			float64(ok.Load())/el.Seconds(), ok.Load(), el.Round(time.Millisecond), failed.Load())
		for _, p := range procs {
			p.stop()
		}
	}
}
