package torture

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if binary, err = buildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		return 1
	}
	return m.Run()
}

// buildBinary builds ./cmd/dockplug into dir, with -race when the tests
// run with it (a data race in the plugin then fails its SIGTERM exit).
func buildBinary(dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	gocmd, err := goTool()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "dockplug")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(gocmd, append(args, "./cmd/dockplug")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build dockplug: %w\n%s", err, out)
	}
	return bin, nil
}

// repoRoot walks up from the working directory to the root module's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == "github.com/dockplug/dockplug" {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of github.com/dockplug/dockplug above the working directory")
		}
		dir = parent
	}
}

func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// goTool finds the go command: PATH, else the GOROOT this test was built
// with.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(build.Default.GOROOT, "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("go command not found in PATH nor in %s", build.Default.GOROOT)
	}
	return p, nil
}

// needBinary skips the test when there is no binary (-short).
func needBinary(t *testing.T) {
	t.Helper()
	if binary == "" {
		t.Skipf("torture: skipping: %v", buildErr)
	}
}
