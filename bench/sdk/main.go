// Command sdk compares a no-op VolumeDriver.Get served by dockplug (with its
// metrics and logging on), by docker/go-plugins-helpers and by a bare
// net/http handler, over unix sockets, driven the way dockerd drives a
// plugin.
//
//	cd bench && go run ./sdk -duration 2s -rounds 5 -concurrency 1,32
//
// Trials are interleaved: every round runs each concurrency against each
// server in turn (the starting server rotates from round to round), so all
// three see the same machine conditions on a shared, noisy host.
//
// Process layout: by default the three servers run, in goroutines, in one
// child process (this program re-executed with -serve DIR) and the load
// generator runs in this one, as dockerd and a plugin are separate
// processes. That keeps the client's goroutines, heap and GC out of the
// servers' process, and lets the child's CPU time, read from /proc between
// trials, be charged to the one server under load: the "server CPU/req"
// column, which unlike throughput is not diluted by the client's own cost.
// Both processes share the same cores, so the client still competes for CPU
// the same way against every server. -inproc runs everything in one process
// instead (no CPU split is then possible).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	duration := flag.Duration("duration", 2*time.Second, "length of one trial (one server at one concurrency)")
	rounds := flag.Int("rounds", 5, "rounds; each runs every server at every concurrency once")
	concFlag := flag.String("concurrency", "1,32", "comma-separated numbers of concurrent callers")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "unrecorded load per server and concurrency before round 1")
	inproc := flag.Bool("inproc", false, "run the servers in this process instead of a child process")
	serveDir := flag.String("serve", "", "internal: serve in `DIR` until stdin closes")
	flag.Parse()

	if *serveDir != "" {
		os.Exit(serveChild(*serveDir))
	}
	var concs []int
	for f := range strings.SplitSeq(*concFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bad -concurrency %q\n", *concFlag)
			os.Exit(2)
		}
		concs = append(concs, n)
	}
	if *rounds < 1 || *duration <= 0 {
		fmt.Fprintln(os.Stderr, "-rounds and -duration must be positive")
		os.Exit(2)
	}
	os.Exit(run(config{duration: *duration, rounds: *rounds, concs: concs, warmup: *warmup, inproc: *inproc}))
}

type config struct {
	duration, warmup time.Duration
	rounds           int
	concs            []int
	inproc           bool
}

// serveChild is the child process: it serves until stdin closes (the parent
// exited or is done) or a signal arrives, then removes the sockets.
func serveChild(dir string) int {
	srv, err := startServers(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	defer srv.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	eof := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(eof) }()
	fmt.Println("ready")
	select {
	case <-sig:
	case <-eof:
	}
	return 0
}

// key is one cell of the result table.
type key struct {
	server string
	conc   int
}

type cell struct {
	tput      []float64 // requests/s per round
	lat       []time.Duration
	reqs      int
	serverCPU time.Duration
	clientCPU time.Duration
}

func run(cfg config) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("/tmp", "dpsdk")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	var serverCPU func() (time.Duration, error)
	if cfg.inproc {
		srv, err := startServers(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer srv.Close()
	} else {
		pid, stopChild, err := startChild(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer stopChild()
		serverCPU = func() (time.Duration, error) { return procCPU(pid) }
	}

	trial := func(name string, conc int, d time.Duration) (trialResult, error) {
		return runTrial(socketPath(dir, name), conc, d, serverCPU)
	}

	started := time.Now()
	if cfg.warmup > 0 {
		for _, conc := range cfg.concs {
			for _, name := range serverNames {
				if _, err := trial(name, conc, cfg.warmup); err != nil {
					fmt.Fprintf(os.Stderr, "warm-up %s c%d: %v\n", name, conc, err)
					return 1
				}
			}
		}
	}
	cells := map[key]*cell{}
	for r := range cfg.rounds {
		for _, conc := range cfg.concs {
			for i := range serverNames {
				name := serverNames[(i+r)%len(serverNames)]
				if ctx.Err() != nil {
					fmt.Fprintln(os.Stderr, "interrupted")
					return 1
				}
				res, err := trial(name, conc, cfg.duration)
				if err != nil {
					fmt.Fprintf(os.Stderr, "round %d %s c%d: %v\n", r+1, name, conc, err)
					return 1
				}
				c := cells[key{name, conc}]
				if c == nil {
					c = &cell{}
					cells[key{name, conc}] = c
				}
				tput := float64(len(res.lat)) / res.elapsed.Seconds()
				c.tput = append(c.tput, tput)
				c.lat = append(c.lat, res.lat...)
				c.reqs += len(res.lat)
				c.serverCPU += res.serverCPU
				c.clientCPU += res.clientCPU
				fmt.Fprintf(os.Stderr, "round %d/%d  c%-3d %-8s %9.0f req/s\n", r+1, cfg.rounds, conc, name, tput)
			}
		}
	}
	report(os.Stdout, cfg, cells, time.Since(started))
	return 0
}

// startChild re-executes this program to serve in dir and waits until the
// servers accept connections.
func startChild(dir string) (pid int, stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(exe, "-serve", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, nil, err
	}
	cmd.Stderr = os.Stderr
	// Own process group: a terminal ^C reaches only us, and we stop the
	// child in order. Pdeathsig covers our being killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop = func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		stop()
		return 0, nil, fmt.Errorf("server process did not start (%q, %v)", line, err)
	}
	return cmd.Process.Pid, stop, nil
}

// procCPU is the user+system CPU time process pid has used so far, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("odd /proc stat")
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type trialResult struct {
	lat       []time.Duration // one per request
	elapsed   time.Duration
	serverCPU time.Duration // 0 when unknown
	clientCPU time.Duration // this process's CPU, client only when not -inproc
}

// runTrial runs conc closed-loop callers against sock for d. Each caller
// first makes a few unrecorded calls so every connection is open before the
// clock starts.
func runTrial(sock string, conc int, d time.Duration, serverCPU func() (time.Duration, error)) (trialResult, error) {
	c := newClient(sock, conc)
	defer c.CloseIdleConnections()
	var ready, done sync.WaitGroup
	ready.Add(conc)
	done.Add(conc)
	start := make(chan struct{})
	var deadline time.Time // written before start is closed
	lats := make([][]time.Duration, conc)
	ends := make([]time.Time, conc)
	errs := make([]error, conc)
	for w := range conc {
		go func() {
			defer done.Done()
			var buf bytes.Buffer
			var err error
			for range 3 {
				if err = callGet(c, &buf); err != nil {
					break
				}
			}
			ready.Done()
			<-start
			if err != nil {
				errs[w] = err
				return
			}
			lat := make([]time.Duration, 0, 1<<14)
			t0 := time.Now()
			for t0.Before(deadline) {
				if err := callGet(c, &buf); err != nil {
					errs[w] = err
					return
				}
				t1 := time.Now()
				lat = append(lat, t1.Sub(t0))
				t0 = t1
			}
			lats[w], ends[w] = lat, t0
		}()
	}
	ready.Wait()
	var s0 time.Duration
	var err error
	if serverCPU != nil {
		if s0, err = serverCPU(); err != nil {
			return trialResult{}, err
		}
	}
	c0 := selfCPU()
	begin := time.Now()
	deadline = begin.Add(d)
	close(start)
	done.Wait()
	res := trialResult{clientCPU: selfCPU() - c0}
	if serverCPU != nil {
		s1, err := serverCPU()
		if err != nil {
			return trialResult{}, err
		}
		res.serverCPU = s1 - s0
	}
	if err := errors.Join(errs...); err != nil {
		return trialResult{}, err
	}
	for w := range conc {
		res.lat = append(res.lat, lats[w]...)
		res.elapsed = max(res.elapsed, ends[w].Sub(begin))
	}
	return res, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile is the nearest-rank p-quantile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func us(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) }

func report(w io.Writer, cfg config, cells map[key]*cell, took time.Duration) {
	host, _ := os.Hostname()
	mode := "servers in a child process, load generator in this one"
	if cfg.inproc {
		mode = "servers and load generator in one process (-inproc)"
	}
	fmt.Fprintf(w, "VolumeDriver.Get over a unix socket, %s, %s, GOMAXPROCS %d, %d CPUs, host %s\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), host)
	fmt.Fprintf(w, "%d rounds x %d servers x concurrency %v, %v per trial (%v warm-up each), interleaved; %s; took %v\n\n",
		cfg.rounds, len(serverNames), cfg.concs, cfg.duration, cfg.warmup, mode, took.Round(time.Second))

	fmt.Fprintln(w, "| server | conc | req/s (median) | req/s min–max | p50 µs | p99 µs | server CPU µs/req | client CPU µs/req | ÷ helpers | ÷ raw |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, conc := range cfg.concs {
		med := map[string]float64{}
		for _, name := range serverNames {
			med[name] = median(cells[key{name, conc}].tput)
		}
		for _, name := range serverNames {
			c := cells[key{name, conc}]
			slices.Sort(c.lat)
			scpu := "n/a"
			if !cfg.inproc {
				scpu = us(c.serverCPU / time.Duration(c.reqs))
			}
			ccpu := us(c.clientCPU / time.Duration(c.reqs))
			if cfg.inproc {
				ccpu = "n/a"
			}
			fmt.Fprintf(w, "| %s | %d | %.0f | %.0f–%.0f | %s | %s | %s | %s | %.2f | %.2f |\n",
				name, conc, med[name], slices.Min(c.tput), slices.Max(c.tput),
				us(percentile(c.lat, .50)), us(percentile(c.lat, .99)), scpu, ccpu,
				med[name]/med["helpers"], med[name]/med["raw"])
		}
	}

	fmt.Fprintln(w)
	met := true
	for _, conc := range cfg.concs {
		dp, hp, raw := cells[key{"dockplug", conc}], cells[key{"helpers", conc}], cells[key{"raw", conc}]
		vsH, okH := verdict(dp.tput, hp.tput, 1.0)
		vsR, okR := verdict(dp.tput, raw.tput, 0.9)
		met = met && okH && okR
		fmt.Fprintf(w, "- c%d: dockplug/helpers %s; dockplug/raw %s", conc, vsH, vsR)
		if !cfg.inproc {
			fmt.Fprintf(w, "; server CPU/req dockplug/helpers %.2f, dockplug/raw %.2f",
				perReq(dp)/perReq(hp), perReq(dp)/perReq(raw))
		}
		fmt.Fprintln(w)
	}
	word := "met"
	if !met {
		word = "NOT met"
	}
	fmt.Fprintf(w, "- target (throughput: dockplug >= helpers and >= 0.90 x raw, at every concurrency): %s\n", word)
}

func perReq(c *cell) float64 { return float64(c.serverCPU) / float64(c.reqs) }

// verdict compares the median throughputs a/b with the threshold, and
// shows the spread of the same-round ratios: on a shared machine a miss
// whose same-round ratios straddle the threshold is not a measured
// difference.
func verdict(a, b []float64, threshold float64) (string, bool) {
	ratio := median(a) / median(b)
	var paired []float64
	for r := range a {
		paired = append(paired, a[r]/b[r])
	}
	lo, hi := slices.Min(paired), slices.Max(paired)
	s := fmt.Sprintf("%.2f (same-round median %.2f, range %.2f–%.2f", ratio, median(paired), lo, hi)
	switch {
	case ratio >= threshold:
		s += fmt.Sprintf(", meets >= %.2f)", threshold)
	case hi >= threshold:
		s += fmt.Sprintf(", below %.2f but within round-to-round noise)", threshold)
	default:
		s += fmt.Sprintf(", MISSES %.2f in every round)", threshold)
	}
	return s, ratio >= threshold
}
