package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockplug/dockplug/internal/dockertest"
	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/mounts"
)

// End-to-end tests of the dockplug-volume plugin (volume/local) served by
// the real binary to a real dockerd. Gotcha numbers (G1...) refer to
// shared/reference/docker-plugin-protocol.md, section 9.
//
// dockerd caches every v1 volume driver it has talked to until it restarts,
// and an unfiltered `docker volume ls` (or a Get of an unknown volume name)
// asks each of them, including the plugins earlier tests already stopped:
// about 15 s of retries per call (G3). So these tests list with
// --filter driver=<plugin> and never inspect names that do not exist.

// TestCreateInspectOwnerMode: `docker volume create -d P -o uid -o gid -o
// mode` makes a directory with that owner and mode, and `docker volume
// inspect` shows the plugin's Get answer: driver, mount point, CreatedAt
// and Status with the options.
func TestCreateInspectOwnerMode(t *testing.T) {
	e := setup(t)
	v := e.vol("owned")
	before := time.Now().Add(-time.Second).Truncate(time.Second)
	e.create(v, "uid=1234", "gid=5678", "mode=0750")
	after := time.Now().Add(time.Second)
	want := map[string]string{"uid": "1234", "gid": "5678", "mode": "0750"}

	info := e.inspect(v)
	if info.Name != v || info.Driver != e.p.Name || info.Scope != "local" {
		t.Errorf("inspect: name %q driver %q scope %q, want %q %q local", info.Name, info.Driver, info.Scope, v, e.p.Name)
	}
	if info.Mountpoint != e.mountpoint(v) {
		t.Errorf("inspect: Mountpoint %q, want %q", info.Mountpoint, e.mountpoint(v))
	}
	created, err := time.Parse(time.RFC3339, info.CreatedAt)
	if err != nil || created.Before(before) || created.After(after) {
		t.Errorf("inspect: CreatedAt %q (%v), want RFC 3339 between %v and %v", info.CreatedAt, err, before, after)
	}
	if info.Labels["dockplug-e2e"] != e.p.Name {
		t.Errorf("inspect: labels %v", info.Labels)
	}
	if !equalMaps(info.Options, want) {
		t.Errorf("inspect: daemon's Options %v, want %v", info.Options, want)
	}
	if got := statusOptions(t, info); !equalMaps(got, want) {
		t.Errorf("inspect: plugin's Status.options %v, want %v", got, want)
	}
	if info.Status["mounts"] != float64(0) {
		t.Errorf("inspect: Status.mounts %v, want 0", info.Status["mounts"])
	}
	data := filepath.Join(e.p.State, "volumes", v, "_data")
	if info.Status["dataPath"] != data {
		t.Errorf("inspect: Status.dataPath %v, want %s", info.Status["dataPath"], data)
	}

	st, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || sys.Uid != 1234 || sys.Gid != 5678 || st.Mode().Perm() != 0o750 {
		t.Errorf("data dir: dir %v uid %d gid %d mode %v, want dir 1234 5678 0750", st.IsDir(), sys.Uid, sys.Gid, st.Mode().Perm())
	}
	// A container sees the same directory, owner and mode.
	if out := e.run("--rm", "-v", v+":/d", image, "stat", "-c", "%u %g %a", "/d"); out != "1234 5678 750\n" {
		t.Errorf("in a container: %q, want 1234 5678 750", out)
	}
	e.waitRefs(v, 0)
	if mounted(t, e.mountpoint(v)) {
		t.Errorf("%s still mounted with no container", e.mountpoint(v))
	}

	// Same name again, other options: the daemon's Get finds the volume and
	// never calls Create (G2), so nothing changes.
	e.create(v, "uid=1")
	if got := statusOptions(t, e.inspect(v)); !equalMaps(got, want) {
		t.Errorf("after a second create: Status.options %v, want %v", got, want)
	}

	e.docker("volume", "rm", v)
	if _, err := os.Stat(filepath.Dir(data)); !os.IsNotExist(err) {
		t.Errorf("volume dir after rm: %v", err)
	}
	if vs := e.pluginVolumes(); len(vs) != 0 {
		t.Errorf("plugin still lists %v", vs)
	}
}

// TestDataSharedBetweenContainers: what one container writes into the
// volume, the next one reads; the volume is mounted only while in use.
func TestDataSharedBetweenContainers(t *testing.T) {
	e := setup(t)
	v := e.vol("shared")
	e.create(v)
	e.run("--rm", "-v", v+":/d", image, "sh", "-c", "echo hello from one > /d/msg")
	if out := e.run("--rm", "-v", v+":/d:ro", image, "cat", "/d/msg"); out != "hello from one\n" {
		t.Errorf("second container read %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(e.p.State, "volumes", v, "_data", "msg")); err != nil || string(b) != "hello from one\n" {
		t.Errorf("data on the host: %q %v", b, err)
	}
	e.waitRefs(v, 0)
	if mounted(t, e.mountpoint(v)) {
		t.Errorf("%s still mounted with no container", e.mountpoint(v))
	}

	// A named volume created implicitly by docker run --volume-driver.
	w := e.vol("implicit")
	e.run("--rm", "--volume-driver", e.p.Name, "-v", w+":/d", image, "sh", "-c", "echo implicit > /d/f")
	if out := e.run("--rm", "-v", w+":/d", image, "cat", "/d/f"); out != "implicit\n" {
		t.Errorf("implicit volume read %q", out)
	}
	if got, want := e.volumes(), []string{w, v}; !slices.Equal(got, want) {
		t.Errorf("volume ls: %v, want %v", got, want)
	}
	e.docker("volume", "rm", v, w)
}

// TestMountRefcountTwoContainers (G1): the daemon forwards every container's
// Mount and Unmount, each container with its own ID. The plugin mounts once,
// keeps the mount while any container uses it, and unmounts with the last.
func TestMountRefcountTwoContainers(t *testing.T) {
	e := setup(t)
	v := e.vol("two")
	mp := e.mountpoint(v)
	e.create(v)
	a := strings.TrimSpace(e.run("-d", "-v", v+":/d", image, "sleep", "300"))
	b := strings.TrimSpace(e.run("-d", "-v", v+":/d", image, "sleep", "300"))
	e.waitRefs(v, 2)
	if !mounted(t, mp) {
		t.Fatalf("%s not mounted with two containers running", mp)
	}
	e.docker("exec", a, "sh", "-c", "echo from-a > /d/a")
	if out := e.docker("exec", b, "cat", "/d/a"); out != "from-a\n" {
		t.Errorf("b reads %q", out)
	}

	// busybox sleep as PID 1 ignores SIGTERM: -t 1 stops it in a second.
	e.docker("stop", "-t", "1", a)
	e.waitRefs(v, 1)
	if !mounted(t, mp) {
		t.Fatalf("%s unmounted while container b still uses it (G1)", mp)
	}
	if out := e.docker("exec", b, "sh", "-c", "echo from-b > /d/b && cat /d/a /d/b"); out != "from-a\nfrom-b\n" {
		t.Errorf("b after a stopped: %q", out)
	}

	e.docker("stop", "-t", "1", b)
	e.waitRefs(v, 0)
	if mounted(t, mp) {
		t.Errorf("%s still mounted after the last container stopped", mp)
	}
	e.docker("rm", a, b)
	e.docker("volume", "rm", v)
}

// TestDockerCpKeepsMount (G1): docker cp into or out of a running
// container's volume makes the daemon Mount and Unmount again with the
// container's mount ID. A plugin that keeps a set of IDs instead of a
// count unmounts the running container's volume at the end of the copy.
func TestDockerCpKeepsMount(t *testing.T) {
	e := setup(t)
	v := e.vol("cp")
	mp := e.mountpoint(v)
	e.create(v)
	c := strings.TrimSpace(e.run("-d", "-v", v+":/data", image, "sleep", "300"))
	e.waitRefs(v, 1)

	dir := t.TempDir()
	src := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(src, []byte("copied in\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.docker("cp", src, c+":/data/in.txt")
	if n := e.refs(v); n != 1 {
		t.Errorf("after docker cp in: plugin holds %d reference(s), want 1", n)
	}
	if !mounted(t, mp) {
		t.Fatalf("%s unmounted by docker cp while the container runs (G1)", mp)
	}
	if b, err := os.ReadFile(filepath.Join(e.p.State, "volumes", v, "_data", "in.txt")); err != nil || string(b) != "copied in\n" {
		t.Errorf("copied file in the volume: %q %v", b, err)
	}
	if out := e.docker("exec", c, "cat", "/data/in.txt"); out != "copied in\n" {
		t.Errorf("container reads %q", out)
	}

	e.docker("exec", c, "sh", "-c", "echo written inside > /data/out.txt")
	e.docker("cp", c+":/data/out.txt", filepath.Join(dir, "out.txt"))
	if b, err := os.ReadFile(filepath.Join(dir, "out.txt")); err != nil || string(b) != "written inside\n" {
		t.Errorf("docker cp out: %q %v", b, err)
	}
	if n := e.refs(v); n != 1 || !mounted(t, mp) {
		t.Fatalf("after docker cp out: %d reference(s), mounted %v; want 1, true (G1)", n, mounted(t, mp))
	}

	e.docker("stop", "-t", "1", c)
	e.waitRefs(v, 0)
	if mounted(t, mp) {
		t.Errorf("%s still mounted after the container stopped", mp)
	}
	e.docker("rm", c)
	e.docker("volume", "rm", v)
}

var anonName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TestAnonymousVolume: `docker run --volume-driver P -v /data` creates a
// volume with a random 64-hex name in the plugin, and `docker rm -v`
// removes it there.
func TestAnonymousVolume(t *testing.T) {
	e := setup(t)
	c := e.p.Name + "-anon"
	e.run("--name", c, "--volume-driver", e.p.Name, "-v", "/data", image, "sh", "-c", "echo anon > /data/f")
	var ms []struct{ Type, Name, Driver, Destination string }
	if err := json.Unmarshal([]byte(e.docker("inspect", "-f", "{{json .Mounts}}", c)), &ms); err != nil || len(ms) != 1 {
		t.Fatalf("container mounts: %v %+v", err, ms)
	}
	m := ms[0]
	if m.Type != "volume" || m.Driver != e.p.Name || m.Destination != "/data" || !anonName.MatchString(m.Name) {
		t.Fatalf("container mount %+v, want an anonymous volume of %s on /data", m, e.p.Name)
	}
	if got := e.pluginVolumes(); !slices.Equal(got, []string{m.Name}) {
		t.Errorf("plugin List: %v, want [%s]", got, m.Name)
	}
	if got := e.volumes(); !slices.Equal(got, []string{m.Name}) {
		t.Errorf("volume ls: %v, want [%s]", got, m.Name)
	}
	data := filepath.Join(e.p.State, "volumes", m.Name, "_data")
	if b, err := os.ReadFile(filepath.Join(data, "f")); err != nil || string(b) != "anon\n" {
		t.Errorf("data: %q %v", b, err)
	}
	e.waitRefs(m.Name, 0)

	e.docker("rm", "-v", c)
	if got := e.pluginVolumes(); len(got) != 0 {
		t.Errorf("after docker rm -v, the plugin lists %v", got)
	}
	if got := e.volumes(); len(got) != 0 {
		t.Errorf("after docker rm -v, volume ls lists %v", got)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("data after docker rm -v: %v", err)
	}
}

// TestLsRmPrune: volume ls filtered by driver, volume rm, removal refused
// while a container uses the volume (by the daemon and by the plugin
// itself), and what volume prune does with plugin volumes.
func TestLsRmPrune(t *testing.T) {
	e := setup(t)
	v1, v2, busy := e.vol("one"), e.vol("two"), e.vol("busy")
	e.create(v1)
	e.create(v2, "mode=0700")
	e.create(busy)
	if got, want := e.volumes(), []string{busy, v1, v2}; !slices.Equal(got, want) {
		t.Fatalf("volume ls: %v, want %v", got, want)
	}
	out := e.docker("volume", "ls", "--filter", "driver="+e.p.Name, "--format", "{{.Driver}} {{.Name}} {{.Scope}}")
	for _, v := range []string{v1, v2, busy} {
		if !strings.Contains(out, e.p.Name+" "+v+" local\n") {
			t.Errorf("volume ls --format: %q lacks %s", out, v)
		}
	}

	c := strings.TrimSpace(e.run("-d", "-v", busy+":/d", image, "sleep", "300"))
	e.waitRefs(busy, 1)
	if _, err := e.dockerErr("volume", "rm", busy); err == nil || !strings.Contains(err.Error(), "volume is in use") {
		t.Errorf("volume rm of a volume in use: %v, want 'volume is in use'", err)
	}
	// The plugin refuses too, should a caller skip the daemon's check.
	cl := e.p.client()
	err := cl.Remove(context.Background(), &volume.RemoveRequest{Name: busy})
	cl.Plugin().Close()
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("plugin Remove of a mounted volume: %v, want 'in use'", err)
	}
	if got := e.pluginVolumes(); !slices.Contains(got, busy) {
		t.Errorf("busy volume gone from the plugin: %v", got)
	}

	e.docker("volume", "rm", v1)
	if got, want := e.volumes(), []string{busy, v2}; !slices.Equal(got, want) {
		t.Errorf("after rm: volume ls %v, want %v", got, want)
	}
	if got, want := e.pluginVolumes(), []string{busy, v2}; !slices.Equal(got, want) {
		t.Errorf("after rm: plugin List %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(e.p.State, "volumes", v1)); !os.IsNotExist(err) {
		t.Errorf("removed volume's dir: %v", err)
	}

	// Prune, limited by label to this test's volumes. dockerd 20.10 (API
	// 1.41) prunes every unused volume of the built-in local driver that has
	// no options, named or anonymous, and never a plugin's volume: its
	// filter is And(ByDriver("local"), ByReferenced(false), ...). From API
	// 1.42 on, prune removes only anonymous volumes unless all=true.
	//
	// The local volume is created and removed naming its driver: without
	// one, dockerd asks every volume driver it knows about the name, one
	// after the other, which is 15 s per plugin an earlier test stopped.
	local := e.vol("local")
	e.docker("volume", "create", "-d", "local", "--label", e.label, local)
	t.Cleanup(func() {
		ctx := context.Background()
		if out, _ := daemon.Docker(ctx, "volume", "ls", "-q", "--filter", "driver=local", "--filter", "name="+local); strings.TrimSpace(out) != "" {
			daemon.Docker(ctx, "volume", "rm", "-f", local)
		}
	})
	out = e.docker("volume", "prune", "-f", "--filter", "label="+e.label)
	deleted := pruned(out)
	if api := apiVersion(t); api < 1.42 {
		if !slices.Equal(deleted, []string{local}) {
			t.Errorf("API %.2f: volume prune deleted %v, want only the unused local volume %s\n%s", api, deleted, local, out)
		}
	} else if slices.Contains(deleted, busy) {
		t.Errorf("API %.2f: volume prune deleted the volume in use: %v", api, deleted)
	}
	// The Engine API's newest prune, all=true (named volumes too), still
	// prunes only the built-in driver's volumes on Engine 29: an unused
	// plugin volume (v2) survives every prune, on both engines.
	if engine() == dockertest.Engine29 {
		local2 := e.vol("local2")
		e.docker("volume", "create", "-d", "local", "--label", e.label, local2)
		t.Cleanup(func() { daemon.Docker(context.Background(), "volume", "rm", "-f", local2) })
		f := url.QueryEscape(`{"label":["` + e.label + `"],"all":["true"]}`)
		resp, err := daemon.Client().Post(dockertest.APIBaseURL+"/v1.56/volumes/prune?filters="+f, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		var res struct{ VolumesDeleted []string }
		err = json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("API 1.56 prune: %d %v", resp.StatusCode, err)
		}
		if !slices.Equal(res.VolumesDeleted, []string{local2}) {
			t.Errorf("Engine 29, API 1.56, all=true: prune deleted %v, want only the local volume %s", res.VolumesDeleted, local2)
		}
	}
	if got, want := e.volumes(), []string{busy, v2}; !slices.Equal(got, want) {
		t.Errorf("after prune: volume ls %v, want %v", got, want)
	}
	if got, want := e.pluginVolumes(), []string{busy, v2}; !slices.Equal(got, want) {
		t.Errorf("after prune: plugin List %v, want %v", got, want)
	}

	e.docker("rm", "-f", c)
	e.waitRefs(busy, 0)
	e.docker("volume", "rm", busy, v2)
	if got := e.volumes(); len(got) != 0 {
		t.Errorf("volume ls at the end: %v", got)
	}
	if got := e.pluginVolumes(); len(got) != 0 {
		t.Errorf("plugin List at the end: %v", got)
	}
}

// pruned parses the "Deleted Volumes:" list of docker volume prune.
func pruned(out string) []string {
	var names []string
	in := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "Deleted Volumes:":
			in = true
		case l == "" || strings.HasPrefix(l, "Total reclaimed"):
			in = false
		case in:
			names = append(names, l)
		}
	}
	slices.Sort(names)
	return names
}

func apiVersion(t *testing.T) float64 {
	t.Helper()
	s := strings.TrimSpace(daemon.MustDocker(t, "version", "-f", "{{.Server.APIVersion}}"))
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("server API version %q: %v", s, err)
	}
	return f
}

// TestPluginKill9WhileMounted (G8): the plugin dies (kill -9) while a
// running container holds its volume, and is started again under the same
// name and state dir. The container keeps its data throughout, the
// reference taken before the crash survives, the later stop unmounts
// cleanly, and new containers work.
func TestPluginKill9WhileMounted(t *testing.T) {
	e := setup(t)
	v := e.vol("crash")
	mp := e.mountpoint(v)
	e.create(v)
	e.run("--rm", "-v", v+":/d", image, "sh", "-c", "echo before > /d/log")
	c := strings.TrimSpace(e.run("-d", "-v", v+":/d", image, "sleep", "300"))
	e.waitRefs(v, 1)
	logStart := logSize(t)

	oldPid := e.p.pid()
	e.p.kill9(t)
	// kill -9 runs no cleanup: the socket is stale (G3) and the mount stays.
	if _, err := os.Lstat(e.p.Sock); err != nil {
		t.Errorf("socket after kill -9: %v (expected a stale socket)", err)
	}
	if !mounted(t, mp) {
		t.Fatalf("%s unmounted by the plugin's death", mp)
	}
	e.docker("exec", c, "sh", "-c", "echo while-dead >> /d/log")

	// Same name, same state dir: it replaces the stale socket, and its
	// durable reference table still holds the container's mount (G8: the
	// daemon will not tell it again).
	if err := e.p.start(); err != nil {
		t.Fatal(err)
	}
	if e.p.pid() == oldPid {
		t.Fatal("plugin not restarted")
	}
	if n := e.refs(v); n != 1 {
		t.Errorf("after restart: plugin holds %d reference(s), want 1", n)
	}
	if !mounted(t, mp) {
		t.Fatalf("%s not mounted after the plugin restarted", mp)
	}
	if out := e.docker("exec", c, "sh", "-c", "echo after >> /d/log && cat /d/log"); out != "before\nwhile-dead\nafter\n" {
		t.Errorf("container after the restart reads %q", out)
	}

	// The stop's Unmount carries the pre-crash ID: the plugin must know it.
	if _, err := e.dockerErr("stop", "-t", "1", c); err != nil {
		t.Errorf("docker stop: %v", err)
	}
	e.waitRefs(v, 0)
	if mounted(t, mp) {
		t.Errorf("%s still mounted after the container stopped", mp)
	}
	if _, err := e.dockerErr("rm", c); err != nil {
		t.Errorf("docker rm: %v", err)
	}
	for _, l := range strings.Split(logSince(t, logStart), "\n") {
		if strings.Contains(l, v) || strings.Contains(l, e.p.Name) {
			t.Errorf("dockerd logged about the volume: %s", l)
		}
	}

	if out := e.run("--rm", "-v", v+":/d", image, "sh", "-c", "echo new >> /d/log && cat /d/log"); out != "before\nwhile-dead\nafter\nnew\n" {
		t.Errorf("new container reads %q", out)
	}
	e.waitRefs(v, 0)
	if mounted(t, mp) {
		t.Errorf("%s still mounted after the new container exited", mp)
	}
	e.docker("volume", "rm", v)
}

// restartPaused restarts the plugin with the test-only fault point set
// (DOCKPLUG_TEST_FAULT, see volume/mounts): the next call that reaches
// point stops there, holding the plugin, until the test kills it. It
// returns the line the plugin writes then and where to look for it.
func (e *env) restartPaused(point string) (marker string, from int) {
	e.t.Helper()
	if err := e.p.stop(); err != nil {
		e.t.Fatal(err)
	}
	e.p.env = []string{mounts.EnvFault + "=" + point + ":pause"}
	from = len(e.p.out.String())
	if err := e.p.start(); err != nil {
		e.t.Fatal(err)
	}
	e.p.env = nil // the restart after the kill runs without the fault
	// Should the test fail before it kills the paused plugin, kill it
	// before the teardown (registered earlier, so run later) needs it.
	paused := e.p.pid()
	e.t.Cleanup(func() {
		if e.p.running() && e.p.pid() == paused {
			e.p.kill9(e.t)
		}
	})
	return "dockplug: test fault: paused at " + point, from
}

// dockerAsync runs the CLI in the background: the plugin will stop inside
// the call that the command makes the daemon send.
func dockerAsync(args ...string) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		_, err := daemon.Docker(ctx, args...)
		done <- err
	}()
	return done
}

func await(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(4 * time.Minute):
		t.Fatalf("%s never returned", what)
		return nil
	}
}

// TestPluginKill9InsideMount: the plugin is killed -9 in the middle of the
// Mount that `docker run` makes the daemon send, and started again. A Mount
// that never answered is failed to the daemon, which then never sends its
// Unmount (its retry, to the restarted plugin, has an empty body).
//
//   - Killed after mounting, before recording: the restarted plugin
//     removes the stray mount, and nothing holds the volume.
//   - Killed after recording, before answering: the known limit. The
//     reference stays and the volume stays mounted, so the plugin refuses
//     to remove it until `dockplug volume release` drops the reference.
//
// Either way the volume works afterwards and no mount is left.
func TestPluginKill9InsideMount(t *testing.T) {
	for _, c := range []struct {
		point string
		held  bool // the crash leaves a reference (the known limit)
	}{
		{mounts.FaultMountAfterMount, false},
		{mounts.FaultMountAfterRecord, true},
	} {
		t.Run(c.point, func(t *testing.T) {
			e := setup(t)
			v := e.vol("m")
			mp := e.mountpoint(v)
			e.create(v)
			marker, from := e.restartPaused(c.point)
			ctr := e.p.Name + "-ctr"
			run := dockerAsync("run", "-d", "--name", ctr, "--label", e.label, "-v", v+":/d", image, "sleep", "300")
			e.p.waitOutput(t, from, marker)
			if !mounted(t, mp) {
				t.Fatalf("paused at %s but %s is not mounted", c.point, mp)
			}
			e.p.kill9(t)
			if err := e.p.start(); err != nil {
				t.Fatal(err)
			}
			err := await(t, run, "docker run")
			if err == nil {
				// Whatever the path, the daemon's answer and the plugin's
				// state must agree: a container running on the volume.
				t.Logf("docker run succeeded after the crash")
				if n := e.refs(v); n != 1 || !mounted(t, mp) {
					t.Fatalf("docker run succeeded, but the plugin holds %d reference(s), mounted %v", n, mounted(t, mp))
				}
				e.docker("rm", "-f", ctr)
				e.waitRefs(v, 0)
			} else {
				t.Logf("docker run failed, as it should: %v", err)
				want := 0
				if c.held {
					want = 1
				}
				if n := e.refs(v); n != want {
					t.Errorf("after the restart the plugin holds %d reference(s), want %d", n, want)
				}
				if mounted(t, mp) != c.held {
					t.Errorf("after the restart: mounted %v, want %v", mounted(t, mp), c.held)
				}
				e.docker("rm", ctr) // it never started: no Unmount
				if c.held {
					if _, err := e.dockerErr("volume", "rm", v); err == nil || !strings.Contains(err.Error(), "is in use (1 mount(s))") {
						t.Fatalf("volume rm with the leftover reference: %v, want the plugin's refusal", err)
					}
					e.releaseAll(v)
				}
			}
			if mounted(t, mp) {
				t.Errorf("%s still mounted with no container", mp)
			}
			if out := e.run("--rm", "-v", v+":/d", image, "sh", "-c", "echo works > /d/f && cat /d/f"); out != "works\n" {
				t.Errorf("a container after the crash reads %q", out)
			}
			e.waitRefs(v, 0)
			e.docker("volume", "rm", v)
			if ms := mountsUnder(t, e.p.Root); len(ms) > 0 {
				t.Errorf("mounts left: %v", ms)
			}
		})
	}
}

// releaseAll drops every reference the plugin holds on name, the way the
// README says to: dockplug volume refs, then dockplug volume release.
func (e *env) releaseAll(name string) {
	e.t.Helper()
	dockplug := func(args ...string) string {
		e.t.Helper()
		out, err := exec.Command(binary, append([]string{"volume", "--state-dir", e.p.Root, "--name", e.p.Name}, args...)...).CombinedOutput()
		if err != nil {
			e.t.Fatalf("dockplug volume %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var refs struct{ Refs map[string]int }
	if err := json.Unmarshal([]byte(dockplug("--json", "refs", name)), &refs); err != nil {
		e.t.Fatal(err)
	}
	if len(refs.Refs) == 0 {
		e.t.Fatalf("dockplug volume refs %s lists no reference", name)
	}
	for id, n := range refs.Refs {
		for range n {
			dockplug("release", name, id)
		}
	}
}

// TestPluginKill9InsideUnmount: the plugin is killed -9 inside the Unmount
// that stopping a container makes the daemon send, after it recorded the
// release and before the real unmount. The daemon never sends that Unmount
// again (it logs the error and forgets the mount), so the release must
// stand: the restarted plugin removes the stray mount, nothing holds the
// volume, and it can be removed once the container is.
func TestPluginKill9InsideUnmount(t *testing.T) {
	e := setup(t)
	v := e.vol("u")
	mp := e.mountpoint(v)
	e.create(v)
	marker, from := e.restartPaused(mounts.FaultUnmountAfterRecord)
	c := strings.TrimSpace(e.run("-d", "-v", v+":/d", image, "sh", "-c", "echo kept > /d/f; exec sleep 300"))
	e.waitRefs(v, 1)
	stop := dockerAsync("stop", "-t", "1", c)
	e.p.waitOutput(t, from, marker)
	if !mounted(t, mp) {
		t.Fatalf("paused inside Unmount but %s is not mounted", mp)
	}
	e.p.kill9(t)
	if err := e.p.start(); err != nil {
		t.Fatal(err)
	}
	if err := await(t, stop, "docker stop"); err != nil {
		t.Errorf("docker stop: %v", err)
	}
	if n := e.refs(v); n != 0 {
		t.Errorf("after the restart the plugin holds %d reference(s), want 0", n)
	}
	if mounted(t, mp) {
		t.Errorf("%s still mounted after the restart: the stray mount was not removed", mp)
	}
	e.docker("rm", c)
	if out := e.run("--rm", "-v", v+":/d", image, "cat", "/d/f"); out != "kept\n" {
		t.Errorf("a container after the crash reads %q", out)
	}
	e.waitRefs(v, 0)
	e.docker("volume", "rm", v)
	if ms := mountsUnder(t, e.p.Root); len(ms) > 0 {
		t.Errorf("mounts left: %v", ms)
	}
}

func logSize(t *testing.T) int64 {
	t.Helper()
	st, err := os.Stat(daemon.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func logSince(t *testing.T, off int64) string {
	t.Helper()
	b, err := os.ReadFile(daemon.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if off > int64(len(b)) {
		return ""
	}
	return string(b[off:])
}

// TestDaemonRestartKeepsVolumes (G2, G9): after dockerd restarts, it asks
// the plugin (started before it, as G9 wants) for every volume it knows;
// any error from Get would purge the volume. All of them are still listed
// with their options and data.
func TestDaemonRestartKeepsVolumes(t *testing.T) {
	e := setup(t)
	v1, v2 := e.vol("opts"), e.vol("plain")
	opts := map[string]string{"uid": "1000", "gid": "1000", "mode": "0770"}
	e.create(v1, "uid=1000", "gid=1000", "mode=0770")
	e.create(v2)
	e.run("--rm", "-v", v1+":/d", image, "sh", "-c", "echo kept > /d/f")
	e.waitRefs(v1, 0)
	created := e.inspect(v1).CreatedAt

	daemon.Restart(t)

	if got, want := e.volumes(), []string{v1, v2}; !slices.Equal(got, want) {
		t.Fatalf("after restart: volume ls %v, want %v", got, want)
	}
	i1, i2 := e.inspect(v1), e.inspect(v2)
	if i1.Driver != e.p.Name || i2.Driver != e.p.Name {
		t.Errorf("after restart: drivers %q %q", i1.Driver, i2.Driver)
	}
	if !equalMaps(i1.Options, opts) || len(i2.Options) != 0 {
		t.Errorf("after restart: daemon's Options %v and %v, want %v and none", i1.Options, i2.Options, opts)
	}
	if got := statusOptions(t, i1); !equalMaps(got, opts) {
		t.Errorf("after restart: Status.options %v, want %v", got, opts)
	}
	if got := statusOptions(t, i2); len(got) != 0 {
		t.Errorf("after restart: Status.options of %s %v, want none", v2, got)
	}
	if i1.CreatedAt != created {
		t.Errorf("after restart: CreatedAt %s, was %s", i1.CreatedAt, created)
	}
	if i1.Labels["dockplug-e2e"] != e.p.Name {
		t.Errorf("after restart: labels %v", i1.Labels)
	}
	if out := e.run("--rm", "-v", v1+":/d", image, "sh", "-c", "cat /d/f; stat -c '%u %g %a' /d"); out != "kept\n1000 1000 770\n" {
		t.Errorf("after restart, a container reads %q", out)
	}
	e.waitRefs(v1, 0)
	e.docker("volume", "rm", v1, v2)
}

// TestBadOptions: wrong -o values reach the user as the plugin's own
// message through the docker CLI, and create nothing; a host path works
// only under an allowed prefix.
func TestBadOptions(t *testing.T) {
	allowed, err := os.MkdirTemp("/tmp", "dpv-allowed")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(allowed) })
	e := setup(t, "--volume-allowed-path", allowed)
	sub := filepath.Join(allowed, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(allowed, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(allowed, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	for i, c := range []struct {
		opts []string
		want string
	}{
		{[]string{"size=1G"}, "unknown option(s) size; known options: gid, mode, path, uid"},
		{[]string{"uid=abc"}, `option uid="abc": strconv.Atoi: parsing "abc": invalid syntax`},
		{[]string{"uid=-1"}, `option uid="-1": out of range`},
		{[]string{"gid=99999999999"}, `option gid="99999999999"`},
		{[]string{"mode=0999"}, `option mode="0999"`},
		{[]string{"mode=17777"}, `option mode="17777": more than 4 octal digits`},
		{[]string{"path=/etc"}, fmt.Sprintf(`option path="/etc": not under an allowed path (%s)`, allowed)},
		{[]string{"path=relative/dir"}, `option path="relative/dir": must be an absolute path`},
		// A symlink under the prefix pointing out of it.
		{[]string{"path=" + filepath.Join(allowed, "escape")}, fmt.Sprintf(`option path="%s/escape": not under an allowed path (%s)`, allowed, allowed)},
		{[]string{"path=" + filepath.Join(allowed, "file")}, fmt.Sprintf(`option path="%s/file": not a directory`, allowed)},
		{[]string{"path=" + filepath.Join(allowed, "missing")}, fmt.Sprintf(`option path="%s/missing": lstat %s/missing: no such file or directory`, allowed, allowed)},
		{[]string{"path=" + sub, "uid=1"}, "options uid, gid and mode apply to new directories, not to path=" + sub},
	} {
		name := e.vol(fmt.Sprintf("bad%d", i))
		t.Run(strings.Join(c.opts, ","), func(t *testing.T) {
			args := []string{"volume", "create", "-d", e.p.Name, "--label", e.label}
			for _, o := range c.opts {
				args = append(args, "-o", o)
			}
			_, err := e.dockerErr(append(args, name)...)
			if err == nil {
				t.Fatalf("created with %v", c.opts)
			}
			if !strings.Contains(err.Error(), "VolumeDriver.Create: "+c.want) {
				t.Errorf("error %q\nwant it to contain %q", err, "VolumeDriver.Create: "+c.want)
			}
			if slices.Contains(e.volumes(), name) || slices.Contains(e.pluginVolumes(), name) {
				t.Errorf("volume %s created anyway", name)
			}
			if _, err := os.Stat(filepath.Join(e.p.State, "volumes", name)); !os.IsNotExist(err) {
				t.Errorf("volume dir made anyway: %v", err)
			}
		})
	}

	// A path under the allowed prefix is used as is, and survives the
	// volume: the plugin deletes only directories it made.
	good := e.vol("hostdir")
	e.create(good, "path="+sub)
	if got := e.inspect(good).Status["dataPath"]; got != sub {
		t.Errorf("Status.dataPath %v, want %s", got, sub)
	}
	e.run("--rm", "-v", good+":/d", image, "sh", "-c", "echo on the host > /d/x")
	if b, err := os.ReadFile(filepath.Join(sub, "x")); err != nil || string(b) != "on the host\n" {
		t.Errorf("host dir: %q %v", b, err)
	}
	e.waitRefs(good, 0)
	e.docker("volume", "rm", good)
	if _, err := os.Stat(filepath.Join(sub, "x")); err != nil {
		t.Errorf("volume rm deleted data in the host path: %v", err)
	}
	if got := e.volumes(); len(got) != 0 {
		t.Errorf("volume ls at the end: %v", got)
	}

	// Without --volume-allowed-path, the path option is refused outright.
	e2 := setup(t)
	_, err = e2.dockerErr("volume", "create", "-d", e2.p.Name, "-o", "path="+sub, e2.vol("nopath"))
	if err == nil || !strings.Contains(err.Error(), `VolumeDriver.Create: option path="`+sub+`": host paths are disabled (the operator allows them with --volume-allowed-path)`) {
		t.Errorf("path without an allowed prefix: %v", err)
	}
	if got := e2.volumes(); len(got) != 0 {
		t.Errorf("volume ls: %v", got)
	}
}
