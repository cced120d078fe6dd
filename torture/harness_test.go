package torture

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockplug/dockplug/plugin"
)

// clientBackoff is the clients' retry schedule: the daemon's doubling from
// a short base, so that a call retries into the restarted plugin within
// the test's time, with a limit well above a restart's duration.
var clientBackoff = plugin.Backoff{Base: 10 * time.Millisecond, Limit: 30 * time.Second}

// killClock tells whether a call was in flight at a kill. Kills are
// sequential; started counts those whose SIGKILL was about to be sent,
// done those whose process has been waited for. A call overlaps a kill iff
// more kills had started when it ended than were done when it began.
type killClock struct{ started, done atomic.Int64 }

func (k *killClock) begin() int64            { return k.done.Load() }
func (k *killClock) overlapped(b int64) bool { return k.started.Load() > b }

// stats are one plugin's figures.
type stats struct {
	kills      int
	ops        int // mutating calls sent (Mount/Unmount, RequestAddress/ReleaseAddress)
	acked      int // success answers: applied exactly once
	rejected   int // error answers outside any kill: applied not at all
	ambiguous  int // in flight at a kill without success, or no answer at all
	ambApplied int // of those, how many the plugin's state shows applied
	violations []string
	rejections []string // the first few error texts of rejected calls
}

func (s *stats) reject(err error) {
	s.rejected++
	if len(s.rejections) < 5 {
		s.rejections = append(s.rejections, err.Error())
	}
}

func (s *stats) violate(format string, args ...any) {
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

// ambiguousCall is the rule of the package doc: a call that failed while a
// kill was in flight, or got no answer at all, may have been applied.
func ambiguousCall(err error, overlapped bool) bool {
	return err != nil && (overlapped || plugin.IsTransport(err))
}

// workload is what one plugin's clients do and how its state is checked.
type workload interface {
	// op runs one client call (or the daemon's pair, like Get then
	// Mount) as worker w, updating the model and the stats.
	op(w int, r *rand.Rand, clock *killClock)
	// check compares the plugin's state with the model after a restart,
	// with no call in flight, records violations, and adopts the outcome
	// of the ambiguous calls.
	check(cycle string)
}

// torture runs the kill -9 cycles of the package doc against p with
// workload wl and logs the seed. It fails the test on harness errors;
// violations are left in st for the caller to report.
func torture(t *testing.T, p *proc, wl workload, st *stats) {
	t.Helper()
	seed := *flagSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (-torture.seed=%d), %d kills, busy %v, %d workers", seed, seed, *flagKills, *flagBusy, *flagWorkers)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	var clock killClock
	for i := range *flagKills {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range *flagWorkers {
			r := rand.New(rand.NewPCG(uint64(seed), uint64(i*1000+w+1)))
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					wl.op(w, r, &clock)
				}
			})
		}
		time.Sleep(time.Duration(rng.Int64N(int64(*flagBusy))))
		clock.started.Add(1)
		err := p.kill9()
		clock.done.Add(1)
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		st.kills++
		// At once: the clients' retries, and new calls, reach the new
		// process as soon as it listens.
		err = p.start()
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("restart after kill %d: %v", i+1, err)
		}
		wl.check(fmt.Sprintf("after kill %d", i+1))
		if len(st.violations) > 50 {
			t.Fatalf("more than 50 violations after %d kills, first: %s", i+1, st.violations[0])
		}
	}
	// A clean stop and start must end in the same state.
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.start(); err != nil {
		t.Fatalf("start after SIGTERM: %v", err)
	}
	wl.check("after a clean restart")
}

// report logs a plugin's figures and fails the test on any violation.
func report(t *testing.T, name string, st *stats, extra string) {
	t.Helper()
	t.Logf("%s: %d kills, %d operations (%d acknowledged, %d rejected, %d ambiguous of which %d applied), %d invariant violations%s",
		name, st.kills, st.ops, st.acked, st.rejected, st.ambiguous, st.ambApplied, len(st.violations), extra)
	if len(st.rejections) > 0 {
		t.Logf("%s: rejected calls (first %d): %s", name, len(st.rejections), strings.Join(st.rejections, "; "))
	}
	for _, v := range st.violations {
		t.Errorf("%s: violation: %s", name, v)
	}
}

// mountsUnder lists the mount points at or below dir in this (the
// plugin's) mount namespace, once per mount: a volume mounted twice on
// the same point appears twice.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// Single spaces: the kernel escapes only " \t\n\\".
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
