package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Image returns ImageName, building it on first use for this daemon: a scratch
// image holding a static /bin/busybox with a symlink per applet (sh, cat,
// echo, ls, sleep, mount, grep, ip, ...). No registry is needed.
func (d *Daemon) Image(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	name, err := d.BuildImage(ctx)
	if err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	return name
}

// BuildImage is Image for callers without a testing.TB (TestMain).
func (d *Daemon) BuildImage(ctx context.Context) (string, error) {
	d.imgMu.Lock()
	defer d.imgMu.Unlock()
	if d.imgBuilt {
		return ImageName, nil
	}
	rootfs, err := busyboxRootfs()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", ImageName, err)
	}
	if _, err := d.DockerInput(ctx, bytes.NewReader(rootfs), "import", "--change", `CMD ["/bin/sh"]`, "-", ImageName); err != nil {
		return "", fmt.Errorf("build %s: %w", ImageName, err)
	}
	d.imgBuilt = true
	return ImageName, nil
}

// busyboxRootfs returns a tar of a minimal root file system around the host's
// static busybox.
func busyboxRootfs() ([]byte, error) {
	path := "/bin/busybox"
	if _, err := os.Stat(path); err != nil {
		if path, err = exec.LookPath("busybox"); err != nil {
			return nil, fmt.Errorf("busybox not found (install busybox-static): %w", err)
		}
	}
	if err := checkStatic(path); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	out, err := exec.Command(path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	applets := strings.Fields(string(out))

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A fixed time keeps the layer content identical across builds.
	mtime := time.Unix(0, 0)
	add := func(h *tar.Header, body []byte) error {
		h.ModTime = mtime
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	dirs := []struct {
		name string
		mode int64
	}{
		{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"proc", 0o755},
		{"sys", 0o755}, {"tmp", 0o1777}, {"root", 0o700}, {"run", 0o755},
		{"mnt", 0o755}, {"var", 0o755}, {"usr", 0o755},
	}
	for _, dir := range dirs {
		if err := add(&tar.Header{Typeflag: tar.TypeDir, Name: dir.name + "/", Mode: dir.mode}, nil); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		body []byte
	}{
		{"bin/busybox", 0o755, bin},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
	for _, f := range files {
		if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.body))}, f.body); err != nil {
			return nil, err
		}
	}
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777}, nil); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// checkStatic fails for a dynamically linked busybox, which would not run in
// a scratch image without its libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; install busybox-static", path)
		}
	}
	return nil
}
