package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/dockplug/dockplug/ipam"
	"github.com/dockplug/dockplug/ipam/alloc"
	"github.com/dockplug/dockplug/ipam/driver"
	"github.com/dockplug/dockplug/plugin/plugintest"
)

// PluginResult is RequestAddress through the whole plugin at one
// concurrency level.
type PluginResult struct {
	Concurrency int
	Duration    time.Duration
	Allocs      int
	Errors      int
	FirstErr    error
	P50, P99    time.Duration
	Max         time.Duration
	// CPU is the process CPU time of the run: client and server are both
	// in this process, so CPU/Allocs is the CPU cost of one round trip.
	CPU time.Duration
}

// PerSecond is the allocation rate.
func (r PluginResult) PerSecond() float64 { return float64(r.Allocs) / r.Duration.Seconds() }

// plugin is dockplug's IPAM driver served on a unix socket, as dockerd
// would reach it, with its state (bbolt, fsync per change) in a temp dir.
type pluginRig struct {
	dir    string
	drv    *driver.Driver
	stop   func() error
	client *ipam.Client
	poolID string
}

// startPlugin serves driver.New on a unix socket and creates one /8 pool.
// stateDir empty means a fresh temp dir (removed by close).
func startPlugin(stateDir string) (*pluginRig, error) {
	dir := stateDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "ipambench"); err != nil {
			return nil, err
		}
	}
	d, err := driver.New(driver.Config{StateDir: dir, HostID: "bench",
		DefaultPools: []alloc.PoolSpec{split4},
		HostRoutes:   func() ([]netip.Prefix, error) { return nil, nil }})
	if err != nil {
		return nil, err
	}
	r, err := plugintest.Start("ipambench", ipam.NewHandler(d))
	if err != nil {
		d.Close()
		return nil, err
	}
	rig := &pluginRig{dir: dir, drv: d, client: ipam.NewClient(r.Client)}
	rig.stop = func() error {
		err := r.Stop()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
		if stateDir == "" {
			os.RemoveAll(dir)
		}
		return err
	}
	p, err := rig.client.RequestPool(context.Background(), &ipam.RequestPoolRequest{AddressSpace: driver.LocalSpace, Pool: pool4.String()})
	if err != nil {
		rig.stop()
		return nil, err
	}
	rig.poolID = p.PoolID
	return rig, nil
}

func (r *pluginRig) close() error { return r.stop() }

// run calls RequestAddress from conc goroutines for d and measures each call.
func (r *pluginRig) run(conc int, d time.Duration) PluginResult {
	res := PluginResult{Concurrency: conc}
	lat := make([][]time.Duration, conc)
	errs := make([]int, conc)
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	cpu0 := processCPU()
	start := time.Now()
	deadline := start.Add(d)
	for w := range conc {
		wg.Go(func() {
			req := &ipam.RequestAddressRequest{PoolID: r.poolID,
				Options: map[string]string{ipam.OptEndpointName: fmt.Sprintf("bench-%d", w)}}
			ls := make([]time.Duration, 0, 4096)
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				_, err := r.client.RequestAddress(context.Background(), req)
				if err != nil {
					errs[w]++
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				ls = append(ls, time.Since(t0))
			}
			lat[w] = ls
		})
	}
	wg.Wait()
	res.Duration = time.Since(start)
	res.CPU = processCPU() - cpu0
	all := slices.Concat(lat...)
	slices.Sort(all)
	res.Allocs = len(all)
	for _, e := range errs {
		res.Errors += e
	}
	res.FirstErr = firstErr
	if n := len(all); n > 0 {
		res.P50 = all[n*50/100]
		res.P99 = all[min(n-1, n*99/100)]
		res.Max = all[n-1]
	}
	return res
}
