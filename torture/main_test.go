package torture

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/dockplug/dockplug/internal/testbin"
)

var (
	flagKills   = flag.Int("torture.kills", 20, "kill -9 cycles per plugin (the issue's size: 100)")
	flagBusy    = flag.Duration("torture.busy", 400*time.Millisecond, "busy period after the clients start in each cycle; the kill lands uniformly in it")
	flagWorkers = flag.Int("torture.workers", 4, "concurrent clients per plugin")
	flagSeed    = flag.Int64("torture.seed", 0, "random seed (0: from the clock; the seed is logged)")
	flagResend  = flag.Bool("torture.resend", false, "retries resend the whole body, as plugin.Client does without WithDrainedRetry (dockerd does not): a call the killed plugin applied is applied again by the new one, which the checks report as violations (a demonstration, not a mode that passes)")
)

// binary is the dockplug binary built from this checkout; buildErr says
// why there is none.
var (
	binary   string
	buildErr error
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		buildErr = errors.New("-short mode")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "dockplug-torture-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = testbin.Build(dir, raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		return 1
	}
	return m.Run()
}

// needBinary skips the test when there is no binary (-short).
func needBinary(t *testing.T) {
	t.Helper()
	if binary == "" {
		t.Skipf("torture: skipping: %v", buildErr)
	}
}
