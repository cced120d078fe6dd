// Command net compares dockplug-net with docker's built-in bridge on one
// private dockerd, side by side in one run: TCP throughput between two
// containers, request latency through a published port from a client
// network namespace, and `docker run --rm --network N IMAGE true` wall
// time. It prints a Markdown table. Run as root from bench/:
//
//	go run ./net -rounds 5
//
// The dockerd is internal/dockertest's (no iptables, no ip_forward) with
// the userland proxy on, so the built-in bridge publishes ports through
// docker-proxy: that is its only path without iptables.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockplug/dockplug/internal/dockertest"
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds; the two networks alternate within each")
	dur := flag.Duration("stream", 3*time.Second, "one throughput trial")
	runs := flag.Int("runs", 10, "docker run trials per network and round")
	flag.Parse()
	if err := run(*rounds, *dur, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench/net:", err)
		os.Exit(1)
	}
}

type net struct {
	name, label    string
	server, client string // container names
	serverIP       string
	hostPort       int
}

func run(rounds int, dur time.Duration, runs int) (err error) {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "dpnb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, b := range [][]string{
		// The product is built in its own module (the parent directory).
		{"go", "build", "-C", "..", "-o", filepath.Join(tmp, "dockplug"), "./cmd/dockplug"},
		{"go", "build", "-o", filepath.Join(tmp, "tcpstream"), "./net/tcpstream"},
	} {
		cmd := exec.Command(b[0], b[1:]...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v: %s", b, err, out)
		}
	}
	d, cleanup, err := dockertest.StartMain(dockertest.WithFlags("--userland-proxy=true"))
	if err != nil {
		return err
	}
	defer cleanup()
	image, err := d.BuildImage(ctx)
	if err != nil {
		return err
	}
	docker := func(args ...string) (string, error) {
		c, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out, err := d.Docker(c, args...)
		return strings.TrimSpace(out), err
	}

	plugin := fmt.Sprintf("dpnb-%d", os.Getpid())
	srv := exec.Command(filepath.Join(tmp, "dockplug"), "serve", "dockplug-net="+plugin, "--state-dir", filepath.Join(tmp, "state"), "--net-ip-forward=false")
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() }()
	sock := "/run/docker/plugins/" + plugin + ".sock"
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 300 {
			return fmt.Errorf("plugin socket %s did not appear", sock)
		}
		time.Sleep(100 * time.Millisecond)
	}

	ns, err := newNS()
	if err != nil {
		return err
	}
	defer ns.remove()

	nets := []*net{{name: plugin + "-bridge", label: "bridge"}, {name: plugin + "-dpn", label: "dockplug-net"}}
	for i, n := range nets {
		drv := "bridge"
		if i == 1 {
			drv = plugin
		}
		if _, err := docker("network", "create", "-d", drv, n.name); err != nil {
			return err
		}
		defer docker("network", "rm", n.name)
		n.hostPort = 28000 + i
		n.server, n.client = n.name+"-s", n.name+"-c"
		for _, c := range []string{n.server, n.client} {
			args := []string{"run", "-d", "--name", c, "--network", n.name}
			if c == n.server {
				args = append(args, "-p", fmt.Sprintf("%d:5001", n.hostPort))
			}
			if _, err := docker(append(args, image, "sleep", "100000")...); err != nil {
				return err
			}
			defer docker("rm", "-f", c)
			if _, err := docker("cp", filepath.Join(tmp, "tcpstream"), c+":/tcpstream"); err != nil {
				return err
			}
		}
		if _, err := docker("exec", "-d", n.server, "/tcpstream", "-serve", ":5001"); err != nil {
			return err
		}
		if n.serverIP, err = docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", n.name), n.server); err != nil {
			return err
		}
	}
	time.Sleep(time.Second)

	tput := map[string][]float64{}
	lat := map[string][]float64{}
	runT := map[string][]float64{}
	for r := range rounds {
		order := nets
		if r%2 == 1 {
			order = []*net{nets[1], nets[0]}
		}
		for _, n := range order {
			fmt.Fprintf(os.Stderr, "round %d: %s\n", r+1, n.label)
			out, err := docker("exec", n.client, "/tcpstream", "-stream", n.serverIP+":5001", "-d", dur.String())
			if err != nil {
				return err
			}
			v, _ := strconv.ParseFloat(out, 64)
			tput[n.label] = append(tput[n.label], v)
			o, err := exec.Command("ip", "netns", "exec", ns.name, filepath.Join(tmp, "tcpstream"), "-rr", fmt.Sprintf("%s:%d", ns.hostAddr, n.hostPort), "-n", "2000").CombinedOutput()
			if err != nil {
				return fmt.Errorf("latency %s: %v: %s", n.label, err, o)
			}
			v, _ = strconv.ParseFloat(strings.TrimSpace(string(o)), 64)
			lat[n.label] = append(lat[n.label], v)
			for range runs {
				t := time.Now()
				if _, err := docker("run", "--rm", "--network", n.name, image, "true"); err != nil {
					return err
				}
				runT[n.label] = append(runT[n.label], time.Since(t).Seconds()*1000)
			}
		}
	}
	med := func(m map[string][]float64, k string) float64 {
		v := append([]float64(nil), m[k]...)
		sort.Float64s(v)
		return v[len(v)/2]
	}
	fmt.Printf("engine %s, %d rounds\n\n", d.Engine, rounds)
	fmt.Println("| metric | bridge | dockplug-net | dockplug-net ÷ bridge | target |")
	fmt.Println("|---|---|---|---|---|")
	b, p := med(tput, "bridge")/1e9*8, med(tput, "dockplug-net")/1e9*8
	fmt.Printf("| TCP throughput container→container (Gbit/s, median) | %.2f | %.2f | %.2f | ≥ 0.95 |\n", b, p, p/b)
	b, p = med(lat, "bridge"), med(lat, "dockplug-net")
	fmt.Printf("| published-port round trip from a client namespace (µs, median of medians) | %.1f | %.1f | %.2f | ≤ 1.0 |\n", b, p, p/b)
	b, p = med(runT, "bridge"), med(runT, "dockplug-net")
	fmt.Printf("| `docker run --rm --network N IMAGE true` (ms, median) | %.0f | %.0f | %.2f | ≤ 1.1 |\n", b, p, p/b)
	return nil
}

// clientNS is a network namespace linked to the host by a veth pair: the
// "other host" that reaches the published ports.
type clientNS struct {
	name, hostIf, hostAddr string
}

func newNS() (*clientNS, error) {
	id := strconv.Itoa(os.Getpid() % 100000)
	n := &clientNS{name: "dpnb" + id, hostIf: "dpnbh" + id, hostAddr: "10.253.77.1"}
	for _, args := range [][]string{
		{"netns", "add", n.name},
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", "eth0", "netns", n.name},
		{"addr", "add", n.hostAddr + "/30", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"-n", n.name, "addr", "add", "10.253.77.2/30", "dev", "eth0"},
		{"-n", n.name, "link", "set", "eth0", "up"},
		{"-n", n.name, "link", "set", "lo", "up"},
		{"-n", n.name, "route", "add", "default", "via", n.hostAddr},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			n.remove()
			return nil, fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}
	// DNAT'd traffic is forwarded from this link: turn forwarding on for
	// it alone.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+n.hostIf+"/forwarding", []byte("1"), 0o644); err != nil {
		n.remove()
		return nil, err
	}
	return n, nil
}

func (n *clientNS) remove() {
	exec.Command("ip", "link", "del", n.hostIf).Run()
	exec.Command("ip", "netns", "del", n.name).Run()
}
