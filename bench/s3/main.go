// Command s3 measures dockplug-s3's file system (the real `dockplug
// s3-mount` process, as the plugin runs it) against the raw baseline of
// one S3 client (minio-go: one whole-object PUT, one streaming GET, no
// FUSE), on one versitygw, rounds interleaved with the order rotating.
// Every mounted tool is timed until the data is in S3 (StatObject or
// ListObjects polled after close), whatever its close and fsync do.
// rclone mount (--vfs-cache-mode off and writes) and s3fs join when they
// are installed, with `rclone copyto`/`cat`/`copy`/`lsf` as the raw
// baseline the ratios are to (-tools picks).
//
// Rows: sequential write until the object is in S3 (fsync, then close);
// cold sequential read (fresh mount); parallel readers of distinct
// objects; small files created (until all are in S3: the unmount waits
// for every upload), listed with stat (what ls -l does), and read. Each
// is reported as MiB/s or files/s, its ratio to the raw baseline of the
// same round, and the FUSE process's CPU seconds per GiB.
//
//	cd bench && go run ./s3 [-size 1024] [-readers 8] [-reader-size 128] [-files 1000] [-rounds 3]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dockplug/dockplug/internal/s3test"
	"github.com/dockplug/dockplug/volume/mounts"
	s3 "github.com/dockplug/dockplug/volume/s3"
)

var (
	sizeMiB     = flag.Int("size", 1024, "MiB of the sequential write and cold read")
	readers     = flag.Int("readers", 8, "parallel readers")
	readerMiB   = flag.Int("reader-size", 128, "MiB of each parallel reader's object")
	files       = flag.Int("files", 1000, "small files")
	fileKiB     = flag.Int("file-size", 4, "KiB of each small file")
	rounds      = flag.Int("rounds", 3, "rounds (tool order rotates each round)")
	dockplugBin = flag.String("dockplug", "", "dockplug binary (default: built from ..)")
	toolsFlag   = flag.String("tools", "", "comma-separated tools (default: every one installed): "+strings.Join(allTools, ", "))
)

// allTools in report order. "raw" is one minio-go client; "rclone raw" is
// rclone copyto / cat / copy / lsf: whole-file transfers, no FUSE.
var allTools = []string{"rclone raw", "raw", "dockplug-s3", "dockplug-s3 close=async", "rclone mount off", "rclone mount writes", "s3fs"}

type result struct {
	row, tool string
	rate      float64 // MiB/s or files/s
	unit      string
	cpu       float64 // FUSE process CPU seconds per GiB (0: none)
	round     int
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/s3:", err)
		os.Exit(1)
	}
}

type bench struct {
	srv    *s3test.Server
	cli    *minio.Client
	bucket string
	work   string
	bin    string
	config string
	data   []byte
	passwd string

	live map[*mount]bool // mounts to undo if the run fails
}

func run() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (FUSE mounts)")
	}
	vbin, err := s3test.Binary()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "bench-s3")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{work: work, bin: *dockplugBin, live: map[*mount]bool{}}
	defer b.cleanup()
	if b.bin == "" {
		b.bin = filepath.Join(work, "dockplug")
		cmd := exec.Command("go", "build", "-o", b.bin, "./cmd/dockplug")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build dockplug: %v\n%s", err, out)
		}
	}
	if b.srv, err = s3test.StartProcess(vbin, work); err != nil {
		return err
	}
	defer b.srv.Stop()
	b.cli = b.srv.Client()
	b.bucket = "bench"
	ctx := context.Background()
	if err := b.cli.MakeBucket(ctx, b.bucket, minio.MakeBucketOptions{Region: s3test.Region}); err != nil {
		return err
	}
	b.config = filepath.Join(work, "s3.yaml")
	cfg := fmt.Sprintf("profiles:\n  default:\n    endpoint: %s\n    region: %s\n    access-key: %s\n    secret-key: %s\nallow-buckets: [bench]\n",
		b.srv.Endpoint, s3test.Region, s3test.AccessKey, s3test.SecretKey)
	if err := os.WriteFile(b.config, []byte(cfg), 0o600); err != nil {
		return err
	}
	b.data = make([]byte, *sizeMiB<<20)
	rand.Read(b.data)
	// The parallel readers' objects, written once by the raw client.
	for i := range *readers {
		if err := b.put(ctx, fmt.Sprintf("shared/r%d", i), b.data[:min(len(b.data), *readerMiB<<20)]); err != nil {
			return err
		}
	}
	var tools []string
	if *toolsFlag != "" {
		tools = strings.Split(*toolsFlag, ",")
	} else {
		for _, t := range allTools {
			bin := map[string]string{"rclone raw": "rclone", "rclone mount off": "rclone", "rclone mount writes": "rclone", "s3fs": "s3fs"}[t]
			if bin != "" {
				if _, err := exec.LookPath(bin); err != nil {
					fmt.Fprintf(os.Stderr, "%s: %s not installed, skipped\n", t, bin)
					continue
				}
			}
			tools = append(tools, t)
		}
	}
	if err := os.WriteFile(filepath.Join(work, "big.bin"), b.data, 0o600); err != nil {
		return err
	}
	pw := filepath.Join(work, "s3fs.passwd")
	if err := os.WriteFile(pw, []byte(s3test.AccessKey+":"+s3test.SecretKey+"\n"), 0o600); err != nil {
		return err
	}
	b.passwd = pw
	if err := os.WriteFile(filepath.Join(work, "rclone.conf"), nil, 0o600); err != nil {
		return err
	}
	var all []result
	for r := range *rounds {
		order := append(tools[r%len(tools):], tools[:r%len(tools)]...)
		for _, tool := range order {
			res, err := b.round(ctx, tool, r)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w\nversitygw:\n%s", r, tool, err, b.srv.Output())
			}
			all = append(all, res...)
			fmt.Fprintf(os.Stderr, "round %d %s done\n", r, tool)
		}
	}
	report(all, tools)
	return nil
}

func (b *bench) put(ctx context.Context, key string, data []byte) error {
	_, err := b.cli.PutObject(ctx, b.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{PartSize: 8 << 20, NumThreads: 4})
	return err
}

// mount is one running FUSE process.
type mount struct {
	b   *bench
	dir string
	cmd *exec.Cmd
}

// mount starts tool's FUSE mount of prefix and waits until it is there.
func (b *bench) mount(tool, prefix string) (*mount, error) {
	dir, err := os.MkdirTemp(b.work, "mnt")
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	switch tool {
	case "dockplug-s3", "dockplug-s3 close=async":
		spec := s3.MountSpec{ConfigFile: b.config, Profile: "default", Bucket: b.bucket, Prefix: prefix, Volume: "bench",
			Mountpoint: dir, CacheDir: filepath.Join(b.work, "cache-"+filepath.Base(dir)), Mode: 0o755, CacheTTL: "2s",
			AsyncClose: strings.HasSuffix(tool, "close=async")}
		js, _ := json.Marshal(spec)
		sf := filepath.Join(b.work, filepath.Base(dir)+".json")
		if err := os.WriteFile(sf, js, 0o600); err != nil {
			return nil, err
		}
		cmd = exec.Command(b.bin, "s3-mount", "--spec", sf, "--log-level", "warn")
	case "rclone mount off", "rclone mount writes":
		mode := strings.TrimPrefix(tool, "rclone mount ")
		cmd = exec.Command("rclone", "mount", ":s3:"+b.bucket+"/"+strings.TrimSuffix(prefix, "/"), dir,
			"--vfs-cache-mode", mode, "--cache-dir", filepath.Join(b.work, "rclone-cache-"+filepath.Base(dir)))
		cmd.Env = b.rcloneEnv()
	case "s3fs":
		cmd = exec.Command("s3fs", b.bucket+":/"+strings.TrimSuffix(prefix, "/"), dir, "-f",
			"-o", "url="+b.srv.Endpoint, "-o", "use_path_request_style", "-o", "passwd_file="+b.passwd,
			"-o", "endpoint="+s3test.Region)
	default:
		return nil, fmt.Errorf("unknown tool %q", tool)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if live, _ := mounts.MountPoints(); live[dir] {
			m := &mount{b: b, dir: dir, cmd: cmd}
			b.live[m] = true
			return m, nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, fmt.Errorf("%s: mount did not appear", tool)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *bench) rcloneEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		// The endpoint is plain HTTP on loopback; a CA bundle from the
		// environment only makes rclone's S3 backend fail to start.
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"RCLONE_CONFIG="+filepath.Join(b.work, "rclone.conf"),
		"RCLONE_S3_PROVIDER=Other", "RCLONE_S3_ENDPOINT="+b.srv.Endpoint, "RCLONE_S3_REGION="+s3test.Region,
		"RCLONE_S3_ACCESS_KEY_ID="+s3test.AccessKey, "RCLONE_S3_SECRET_ACCESS_KEY="+s3test.SecretKey,
		"RCLONE_S3_FORCE_PATH_STYLE=true",
		// versitygw honours only a lower-case Expect: 100-continue: without
		// this, rclone stalls 1-10 s per part.
		"RCLONE_EXPECT_CONTINUE_TIMEOUT=0s")
}

func (b *bench) rclone(args ...string) error {
	cmd := exec.Command("rclone", args...)
	cmd.Env = b.rcloneEnv()
	cmd.Stdout = io.Discard
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("rclone %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return nil
}

// cleanup undoes the mounts a failed run left: lazy unmount, then the
// process (ours, by its PID).
func (b *bench) cleanup() {
	for m := range b.live {
		_ = syscall.Unmount(m.dir, syscall.MNT_DETACH)
		_ = m.cmd.Process.Kill()
		_, _ = m.cmd.Process.Wait()
	}
}

// unmount unmounts and waits for the process; it returns the process's
// CPU seconds.
func (m *mount) unmount() (float64, error) {
	if err := syscall.Unmount(m.dir, 0); err != nil {
		return 0, err
	}
	st, err := m.cmd.Process.Wait()
	if err != nil {
		return 0, err
	}
	delete(m.b.live, m)
	u := st.SysUsage().(*syscall.Rusage)
	return time.Duration(u.Utime.Nano() + u.Stime.Nano()).Seconds(), nil
}

// inS3 waits until key is in S3 with size bytes, or n objects are under
// prefix (tools that acknowledge close or fsync before the upload are
// measured until the data is really there).
func (b *bench) inS3(ctx context.Context, key string, size int64) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		st, err := b.cli.StatObject(ctx, b.bucket, key, minio.StatObjectOptions{})
		if err == nil && st.Size == size {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not in S3 after 10 minutes", key)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bench) countIn(ctx context.Context, prefix string, n int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		k := 0
		for o := range b.cli.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if o.Err == nil && o.Size == int64(*fileKiB<<10) {
				k++
			}
		}
		if k >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d small files in S3 after 10 minutes", k, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mibps(bytes int, d time.Duration) float64 { return float64(bytes) / (1 << 20) / d.Seconds() }

// round runs every row for one tool.
func (b *bench) round(ctx context.Context, tool string, r int) ([]result, error) {
	prefix := fmt.Sprintf("%s-%d/", strings.NewReplacer(" ", "-", "=", "-").Replace(tool), r)
	gib := func(n int) float64 { return float64(n) / (1 << 30) }
	var out []result
	add := func(row string, rate float64, unit string, cpu float64) {
		out = append(out, result{row: row, tool: tool, rate: rate, unit: unit, cpu: cpu, round: r})
	}
	readersRow := fmt.Sprintf("%d parallel readers", *readers)
	switch tool {
	case "raw":
		return out, b.rawMinio(ctx, prefix, add)
	case "rclone raw":
		return out, b.rawRclone(ctx, prefix, add)
	}

	// Sequential write: 1 MiB writes, fsync, close, until in S3.
	m, err := b.mount(tool, prefix)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	f, err := os.Create(filepath.Join(m.dir, "big"))
	if err != nil {
		return nil, err
	}
	for off := 0; off < len(b.data); off += 1 << 20 {
		if _, err := f.Write(b.data[off:min(off+1<<20, len(b.data))]); err != nil {
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := b.inS3(ctx, prefix+"big", int64(len(b.data))); err != nil {
		return nil, err
	}
	wt := time.Since(t0)
	cpu, err := m.unmount()
	if err != nil {
		return nil, err
	}
	add("seq write until in S3", mibps(len(b.data), wt), "MiB/s", cpu/gib(len(b.data)))

	// Cold read: a fresh mount.
	if m, err = b.mount(tool, prefix); err != nil {
		return nil, err
	}
	t0 = time.Now()
	n, err := readAll(filepath.Join(m.dir, "big"))
	if err != nil {
		return nil, err
	}
	rt := time.Since(t0)
	if cpu, err = m.unmount(); err != nil {
		return nil, err
	}
	if n != int64(len(b.data)) {
		return nil, fmt.Errorf("cold read: %d bytes, want %d", n, len(b.data))
	}
	add("cold seq read", mibps(int(n), rt), "MiB/s", cpu/gib(int(n)))

	// Parallel readers of distinct objects.
	if m, err = b.mount(tool, "shared/"); err != nil {
		return nil, err
	}
	t0 = time.Now()
	total, err := parallel(*readers, func(i int) (int64, error) { return readAll(filepath.Join(m.dir, fmt.Sprintf("r%d", i))) })
	if err != nil {
		return nil, err
	}
	pt := time.Since(t0)
	if cpu, err = m.unmount(); err != nil {
		return nil, err
	}
	add(readersRow, mibps(int(total), pt), "MiB/s", cpu/gib(int(total)))

	// Small files: created by 16 writers, until all are in S3.
	if m, err = b.mount(tool, prefix); err != nil {
		return nil, err
	}
	small := b.data[:*fileKiB<<10]
	if err := os.Mkdir(filepath.Join(m.dir, "small"), 0o755); err != nil {
		return nil, err
	}
	t0 = time.Now()
	if _, err := parallel(16, func(w int) (int64, error) {
		for i := w; i < *files; i += 16 {
			if err := os.WriteFile(filepath.Join(m.dir, "small", fmt.Sprintf("f%05d", i)), small, 0o644); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}); err != nil {
		return nil, err
	}
	if err := b.countIn(ctx, prefix+"small/", *files); err != nil {
		return nil, err
	}
	add("small files create→S3", float64(*files)/time.Since(t0).Seconds(), "files/s", 0)
	if _, err = m.unmount(); err != nil {
		return nil, err
	}
	if m, err = b.mount(tool, prefix); err != nil {
		return nil, err
	}
	t0 = time.Now()
	ents, err := os.ReadDir(filepath.Join(m.dir, "small"))
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if _, err := e.Info(); err != nil {
			return nil, err
		}
	}
	if len(ents) != *files {
		return nil, fmt.Errorf("listed %d small files, want %d", len(ents), *files)
	}
	add("small files list (+stat)", float64(len(ents))/time.Since(t0).Seconds(), "files/s", 0)
	t0 = time.Now()
	if _, err := parallel(16, func(w int) (int64, error) {
		for i := w; i < *files; i += 16 {
			if _, err := readAll(filepath.Join(m.dir, "small", fmt.Sprintf("f%05d", i))); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}); err != nil {
		return nil, err
	}
	add("small files read", float64(*files)/time.Since(t0).Seconds(), "files/s", 0)
	if _, err = m.unmount(); err != nil {
		return nil, err
	}
	return out, nil
}

type addFunc func(row string, rate float64, unit string, cpu float64)

// rawRclone is rclone without FUSE: copyto, cat, copy and lsf.
func (b *bench) rawRclone(ctx context.Context, prefix string, add addFunc) error {
	remote := ":s3:" + b.bucket + "/" + prefix
	t0 := time.Now()
	if err := b.rclone("copyto", filepath.Join(b.work, "big.bin"), remote+"big"); err != nil {
		return err
	}
	add("seq write until in S3", mibps(len(b.data), time.Since(t0)), "MiB/s", 0)
	t0 = time.Now()
	if err := b.rclone("cat", remote+"big"); err != nil {
		return err
	}
	add("cold seq read", mibps(len(b.data), time.Since(t0)), "MiB/s", 0)
	t0 = time.Now()
	if _, err := parallel(*readers, func(i int) (int64, error) {
		return 0, b.rclone("cat", fmt.Sprintf(":s3:%s/shared/r%d", b.bucket, i))
	}); err != nil {
		return err
	}
	add(fmt.Sprintf("%d parallel readers", *readers), mibps(*readers*min(len(b.data), *readerMiB<<20), time.Since(t0)), "MiB/s", 0)
	dir := filepath.Join(b.work, "small-"+strings.TrimSuffix(prefix, "/"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for i := range *files {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), b.data[:*fileKiB<<10], 0o600); err != nil {
			return err
		}
	}
	t0 = time.Now()
	if err := b.rclone("copy", "--transfers", "16", dir, remote+"small"); err != nil {
		return err
	}
	add("small files create→S3", float64(*files)/time.Since(t0).Seconds(), "files/s", 0)
	t0 = time.Now()
	if err := b.rclone("lsf", remote+"small"); err != nil {
		return err
	}
	add("small files list (+stat)", float64(*files)/time.Since(t0).Seconds(), "files/s", 0)
	t0 = time.Now()
	if err := b.rclone("cat", remote+"small"); err != nil {
		return err
	}
	add("small files read", float64(*files)/time.Since(t0).Seconds(), "files/s", 0)
	return nil
}

// rawMinio is one minio-go client, no FUSE.
func (b *bench) rawMinio(ctx context.Context, prefix string, add addFunc) error {
	t0 := time.Now()
	if err := b.put(ctx, prefix+"big", b.data); err != nil {
		return err
	}
	add("seq write until in S3", mibps(len(b.data), time.Since(t0)), "MiB/s", 0)
	t0 = time.Now()
	o, err := b.cli.GetObject(ctx, b.bucket, prefix+"big", minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, o)
	o.Close()
	if err != nil {
		return err
	}
	add("cold seq read", mibps(int(n), time.Since(t0)), "MiB/s", 0)
	t0 = time.Now()
	total, err := parallel(*readers, func(i int) (int64, error) {
		o, err := b.cli.GetObject(ctx, b.bucket, fmt.Sprintf("shared/r%d", i), minio.GetObjectOptions{})
		if err != nil {
			return 0, err
		}
		defer o.Close()
		return io.Copy(io.Discard, o)
	})
	if err != nil {
		return err
	}
	add(fmt.Sprintf("%d parallel readers", *readers), mibps(int(total), time.Since(t0)), "MiB/s", 0)
	small := b.data[:*fileKiB<<10]
	t0 = time.Now()
	if _, err := parallel(16, func(w int) (int64, error) {
		for i := w; i < *files; i += 16 {
			if err := b.put(ctx, fmt.Sprintf("%ssmall/f%05d", prefix, i), small); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}); err != nil {
		return err
	}
	add("small files create→S3", float64(*files)/time.Since(t0).Seconds(), "files/s", 0)
	t0 = time.Now()
	k := 0
	for o := range b.cli.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: prefix + "small/"}) {
		if o.Err != nil {
			return o.Err
		}
		k++
	}
	add("small files list (+stat)", float64(k)/time.Since(t0).Seconds(), "files/s", 0)
	t0 = time.Now()
	if _, err := parallel(16, func(w int) (int64, error) {
		for i := w; i < *files; i += 16 {
			o, err := b.cli.GetObject(ctx, b.bucket, fmt.Sprintf("%ssmall/f%05d", prefix, i), minio.GetObjectOptions{})
			if err != nil {
				return 0, err
			}
			_, err = io.Copy(io.Discard, o)
			o.Close()
			if err != nil {
				return 0, err
			}
		}
		return 0, nil
	}); err != nil {
		return err
	}
	add("small files read", float64(*files)/time.Since(t0).Seconds(), "files/s", 0)
	return nil
}

func readAll(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func parallel(n int, fn func(i int) (int64, error)) (int64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	var first error
	for i := range n {
		wg.Go(func() {
			k, err := fn(i)
			mu.Lock()
			defer mu.Unlock()
			total += k
			if err != nil && first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	return total, first
}

// report prints, per row and tool, the median rate, the median same-round
// ratio to raw, and the median CPU per GiB.
func report(all []result, tools []string) {
	var rows []string
	seen := map[string]bool{}
	for _, r := range all {
		if !seen[r.row] {
			seen[r.row] = true
			rows = append(rows, r.row)
		}
	}
	base := "raw"
	if slices.Contains(tools, "rclone raw") {
		base = "rclone raw"
	}
	rawOf := map[string]float64{}
	for _, r := range all {
		if r.tool == base {
			rawOf[fmt.Sprint(r.row, r.round)] = r.rate
		}
	}
	fmt.Printf("| row | tool | rate | × %s (same round) | FUSE CPU s/GiB |\n|---|---|---|---|---|\n", base)
	for _, row := range rows {
		for _, tool := range tools {
			var rates, ratios, cpus []float64
			unit := ""
			for _, r := range all {
				if r.row == row && r.tool == tool {
					unit = r.unit
					rates = append(rates, r.rate)
					ratios = append(ratios, r.rate/rawOf[fmt.Sprint(r.row, r.round)])
					cpus = append(cpus, r.cpu)
				}
			}
			cpu := "–"
			if c := median(cpus); c > 0 {
				cpu = fmt.Sprintf("%.2f", c)
			}
			fmt.Printf("| %s | %s | %.1f %s | %.2f× | %s |\n", row, tool, median(rates), unit, median(ratios), cpu)
		}
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
