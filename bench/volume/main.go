// Command volume measures the dockplug-volume plugin (volume/local, served
// in-process by plugin.Server exactly as `dockplug serve` serves it) against
// dockerd's built-in local volume driver, on a private dockerd it starts
// and removes itself:
//
//	(a) the volume life cycle, per cycle: Create, Mount, Unmount, Remove of
//	    dockplug-volume through the SDK Client (as dockerd calls it), with
//	    and without the mount; and create + remove through the Engine API
//	    (POST /volumes/create, DELETE /volumes/NAME) for both drivers.
//	    Mount and Unmount have no Engine API of their own, so the built-in
//	    driver's cycle has none;
//	(b) `docker run --rm -v VOL:/d IMAGE true` with a volume of each driver
//	    (and with no volume, as a baseline), interleaved.
//
// It prints Markdown tables of medians and p90s. Run it as root from the
// bench module:
//
//	cd bench && go run ./volume [-cycles 100] [-runs 30]
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dockplug/dockplug/plugin"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/local"
)

var (
	cycles = flag.Int("cycles", 100, "life cycles per variant in (a)")
	runs   = flag.Int("runs", 30, "docker runs per volume in (b)")
	warmup = flag.Int("warmup", 2, "unrecorded warm-up rounds before each part")
)

func main() { os.Exit(run()) }

func run() int {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench/volume: needs root (it runs dockerd and bind-mounts volumes)")
		return 2
	}
	if *cycles < 1 || *runs < 1 || *warmup < 0 {
		fmt.Fprintln(os.Stderr, "bench/volume: -cycles and -runs must be positive")
		return 2
	}
	// ^C or SIGTERM ends the measurement; the deferred teardown still runs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b, err := setup(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/volume:", err)
		return 1
	}
	code := 0
	if err := b.measure(ctx, os.Stdout); err != nil {
		if ctx.Err() != nil {
			err = errors.New("interrupted")
		}
		fmt.Fprintln(os.Stderr, "bench/volume:", err)
		code = 1
	}
	if err := b.close(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/volume: teardown:", err)
		code = 1
	}
	return code
}

const image = "dockplug-bench-busybox"

type bench struct {
	name     string // plugin name: unique, dockerd finds it in /run/docker/plugins
	stateDir string
	drv      *local.Driver
	srv      *plugin.Server
	stopSrv  context.CancelFunc
	srvDone  chan error
	client   *volume.Client
	d        *daemon
}

// setup starts the plugin, then dockerd (plugins first, G9), and builds
// the image.
func setup(ctx context.Context) (_ *bench, err error) {
	b := &bench{name: "dpvb-" + randHex(4)}
	defer func() {
		if err != nil {
			if cerr := b.close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
			}
		}
	}()
	if b.stateDir, err = os.MkdirTemp("/tmp", "dpvb-s"); err != nil {
		return b, err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if b.drv, err = local.New(ctx, local.Config{StateDir: b.stateDir, Logger: log}); err != nil {
		return b, err
	}
	if b.srv, err = plugin.NewServer(plugin.Config{Name: b.name, Logger: log}, volume.NewHandler(b.drv)); err != nil {
		return b, err
	}
	if err = b.srv.Listen(); err != nil {
		return b, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	b.stopSrv, b.srvDone = cancel, make(chan error, 1)
	go func() { b.srvDone <- b.srv.Serve(sctx) }()
	pc, err := plugin.NewClient(b.srv.Addr())
	if err != nil {
		return b, err
	}
	b.client = volume.NewClient(pc)
	if _, err = pc.Activate(ctx); err != nil {
		return b, err
	}

	if b.d, err = startDaemon(ctx); err != nil {
		return b, err
	}
	if err = b.d.buildImage(ctx, image); err != nil {
		return b, err
	}
	return b, nil
}

// close stops dockerd, then the plugin (which removes its socket), and
// checks that no mount of the plugin is left.
func (b *bench) close() error {
	var errs []error
	if b.d != nil {
		if err := b.d.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if b.client != nil {
		b.client.Plugin().Close()
	}
	if b.stopSrv != nil {
		b.stopSrv()
		if err := <-b.srvDone; err != nil {
			errs = append(errs, err)
		}
	} else if b.srv != nil {
		b.srv.Close()
	}
	if b.drv != nil {
		if err := b.drv.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(plugin.DefaultSocketDir, b.name+".sock")); err == nil {
		errs = append(errs, fmt.Errorf("plugin socket %s.sock left behind", b.name))
	}
	if b.stateDir != "" {
		if ms, _ := mountsUnder(b.stateDir); len(ms) > 0 {
			errs = append(errs, fmt.Errorf("plugin mounts left behind: %v", ms))
		}
		if err := unmountUnder(b.stateDir); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(b.stateDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// variant is one thing measured, once per call of fn.
type variant struct {
	label string
	fn    func(ctx context.Context, i int) error
	times []time.Duration
}

// interleave runs each variant once per round, rotating which goes first,
// so that drift in the machine's load hits all alike. The first warm-up
// rounds are not recorded.
func interleave(ctx context.Context, vs []*variant, rounds, warm int) error {
	for r := range warm + rounds {
		for k := range vs {
			v := vs[(r+k)%len(vs)]
			if err := ctx.Err(); err != nil {
				return err
			}
			start := time.Now()
			if err := v.fn(ctx, r); err != nil {
				return fmt.Errorf("%s: %w", v.label, err)
			}
			if r >= warm {
				v.times = append(v.times, time.Since(start))
			}
		}
	}
	return nil
}

func (b *bench) measure(ctx context.Context, w io.Writer) error {
	info, err := b.hostInfo(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\n\n", info)

	// (a) life cycles.
	sdk := func(prefix string, mount bool) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			name := fmt.Sprintf("%s-%d", prefix, i)
			if err := b.client.Create(ctx, &volume.CreateRequest{Name: name}); err != nil {
				return err
			}
			if mount {
				id := randHex(32) // like the daemon's 64-hex mount IDs
				if _, err := b.client.Mount(ctx, &volume.MountRequest{Name: name, ID: id}); err != nil {
					return err
				}
				if err := b.client.Unmount(ctx, &volume.UnmountRequest{Name: name, ID: id}); err != nil {
					return err
				}
			}
			return b.client.Remove(ctx, &volume.RemoveRequest{Name: name})
		}
	}
	engine := func(prefix, driver string) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			name := fmt.Sprintf("%s-%d", prefix, i)
			if _, err := b.d.call(ctx, http.MethodPost, "/volumes/create", map[string]any{"Name": name, "Driver": driver}, http.StatusCreated); err != nil {
				return err
			}
			_, err := b.d.call(ctx, http.MethodDelete, "/volumes/"+url.PathEscape(name), nil, http.StatusNoContent)
			return err
		}
	}
	localAPI := &variant{label: "local: Engine API create + remove", fn: engine("la", "local")}
	plugAPI := &variant{label: "dockplug: Engine API create + remove", fn: engine("pa", b.name)}
	plugSDK := &variant{label: "dockplug: SDK Create + Remove", fn: sdk("ps", false)}
	plugSDKMount := &variant{label: "dockplug: SDK Create + Mount + Unmount + Remove", fn: sdk("pm", true)}
	fmt.Fprintf(os.Stderr, "(a) %d cycles per variant...\n", *cycles)
	if err := interleave(ctx, []*variant{localAPI, plugAPI, plugSDK, plugSDKMount}, *cycles, *warmup); err != nil {
		return err
	}
	fmt.Fprintf(w, "### (a) Volume life cycle, time per cycle (N=%d each, interleaved)\n\n", *cycles)
	fmt.Fprintln(w, "| cycle | median | p90 | median vs local |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	base := median(localAPI.times)
	for _, v := range []*variant{localAPI, plugAPI, plugSDK, plugSDKMount} {
		fmt.Fprintf(w, "| %s | %s | %s | %.2f× |\n", v.label, ms(median(v.times)), ms(p90(v.times)), float64(median(v.times))/float64(base))
	}
	fmt.Fprintln(w, "\nThe built-in driver's Mount/Unmount have no Engine API of their own (dockerd calls them only")
	fmt.Fprintln(w, "around a container), so its cycle is create + remove; the SDK rows call the plugin directly,")
	fmt.Fprintln(w, "as dockerd does, and the Mount row includes the real bind mount and unmount.")

	// (b) docker run.
	lv, pv := "bench-local-"+randHex(3), "bench-dockplug-"+randHex(3)
	if _, err := b.d.call(ctx, http.MethodPost, "/volumes/create", map[string]any{"Name": lv, "Driver": "local"}, http.StatusCreated); err != nil {
		return err
	}
	if _, err := b.d.call(ctx, http.MethodPost, "/volumes/create", map[string]any{"Name": pv, "Driver": b.name}, http.StatusCreated); err != nil {
		return err
	}
	dockerRun := func(vol string) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			args := []string{"run", "--rm", "--network", "none"}
			if vol != "" {
				args = append(args, "-v", vol+":/d")
			}
			_, err := b.d.cli(ctx, nil, append(args, image, "true")...)
			return err
		}
	}
	none := &variant{label: "no volume (baseline)", fn: dockerRun("")}
	lrun := &variant{label: "local volume", fn: dockerRun(lv)}
	prun := &variant{label: "dockplug-volume volume", fn: dockerRun(pv)}
	fmt.Fprintf(os.Stderr, "(b) %d docker runs per volume...\n", *runs)
	if err := interleave(ctx, []*variant{lrun, prun, none}, *runs, *warmup); err != nil {
		return err
	}
	// Every run's Mount was matched by an Unmount (G1): nothing is held.
	g, err := b.client.Get(ctx, &volume.GetRequest{Name: pv})
	if err != nil {
		return err
	}
	if n := g.Volume.Status["mounts"]; n != float64(0) {
		return fmt.Errorf("after the runs the plugin still holds %v mount reference(s) on %s", n, pv)
	}
	for _, v := range []string{lv, pv} {
		if _, err := b.d.call(ctx, http.MethodDelete, "/volumes/"+v, nil, http.StatusNoContent); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\n### (b) `docker run --rm --network none -v VOL:/d IMAGE true` (N=%d each, interleaved)\n\n", *runs)
	fmt.Fprintln(w, "| volume | median | p90 | min | max |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, v := range []*variant{none, lrun, prun} {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", v.label, ms(median(v.times)), ms(p90(v.times)), ms(slices.Min(v.times)), ms(slices.Max(v.times)))
	}
	rm, rp := float64(median(prun.times))/float64(median(lrun.times)), float64(p90(prun.times))/float64(p90(lrun.times))
	verdict := "within"
	if rm > 1.10 {
		verdict = "NOT within"
	}
	fmt.Fprintf(w, "\ndockplug/local: median %.3f, p90 %.3f (median %+.1f ms): %s the 10%% target.\n",
		rm, rp, float64(median(prun.times)-median(lrun.times))/float64(time.Millisecond), verdict)
	return nil
}

func (b *bench) hostInfo(ctx context.Context) (string, error) {
	out, err := b.d.call(ctx, http.MethodGet, "/info", nil, http.StatusOK)
	if err != nil {
		return "", err
	}
	var info struct {
		ServerVersion, Driver, KernelVersion string
		NCPU                                 int
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", err
	}
	load, _ := os.ReadFile("/proc/loadavg")
	goVersion := runtime.Version()
	if v, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		goVersion = strings.TrimSpace(string(v))
	}
	return fmt.Sprintf("%s, dockerd %s (storage driver %s), kernel %s, %d CPUs, load average at start %s, %s",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), info.ServerVersion, info.Driver, info.KernelVersion,
		info.NCPU, strings.Join(strings.Fields(string(load))[:3], " "), goVersion), nil
}

// median of ds (the mean of the two middle values for an even count).
func median(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// p90 is the nearest-rank 90th percentile.
func p90(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	return s[int(math.Ceil(0.9*float64(len(s))))-1]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
