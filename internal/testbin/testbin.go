// Package testbin builds the dockplug binary from this checkout for tests
// that drive the real binary (e2e, torture, linearizability).
package testbin

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Module is the root module's path.
const Module = "github.com/dockplug/dockplug"

// Build builds ./cmd/dockplug into dir/dockplug, with -race when race is
// set (pass the calling test binary's own race setting), and returns its
// path.
func Build(dir string, race bool) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	gocmd, err := goTool()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "dockplug")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command(gocmd, append(args, "./cmd/dockplug")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build dockplug: %w\n%s", err, out)
	}
	return bin, nil
}

// RepoRoot walks up from the working directory (a package dir under go
// test) to the root module's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == Module {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of " + Module + " above the working directory")
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
