package torture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/dockplug/dockplug/volume"
	"github.com/dockplug/dockplug/volume/local"
)

// TestVolumeKill9 is section 3 for dockplug-volume: concurrent Mount and
// Unmount with distinct IDs (and repeated Mounts of one ID, as docker cp
// sends) on a few volumes, each preceded by the daemon's Get. After each
// restart the reference table, read through the plugin, equals the
// acknowledged Mounts minus the acknowledged Unmounts per (volume, ID),
// give or take the ambiguous calls; and after the start-up Reconcile the
// kernel's mount table holds exactly one mount per volume with references,
// and none other.
func TestVolumeKill9(t *testing.T) {
	needBinary(t)
	if os.Geteuid() != 0 {
		t.Skip("torture: skipping: dockplug-volume bind-mounts, which needs root")
	}
	p := newProc(t, "dockplug-volume", volume.Kind)
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	vt := &volTorture{p: p, c: volume.NewClient(p.client(clientBackoff)),
		admin: local.NewAdminClient(p.adminClient(clientBackoff)), exp: map[volKey]int{}, taint: map[volKey]*pending{}, owner: map[volKey]int{}}
	defer vt.c.Plugin().Close()
	ctx := context.Background()
	for i := range 3 {
		name := fmt.Sprintf("tv%d", i)
		if err := vt.c.Create(ctx, &volume.CreateRequest{Name: name}); err != nil {
			t.Fatalf("create volume %s: %v", name, err)
		}
		vt.vols = append(vt.vols, name)
	}
	real, err := filepath.EvalSymlinks(p.State)
	if err != nil {
		t.Fatalf("state dir: %v", err)
	}
	vt.mountRoot = filepath.Join(real, "mounts")

	torture(t, p, vt, &vt.st)

	// Drain: every reference the model holds is released, as the daemon
	// would; then nothing may stay mounted.
	for k, n := range vt.exp {
		for range n {
			if err := vt.c.Unmount(ctx, &volume.UnmountRequest{Name: k.vol, ID: k.id}); err != nil {
				t.Errorf("drain: unmount %s %s: %v", k.vol, k.id, err)
			}
		}
		delete(vt.exp, k)
	}
	vt.check("after the drain")
	if ms, err := mountsUnder(vt.mountRoot); err != nil || len(ms) > 0 {
		t.Errorf("after the drain: mounts left %v (%v)", ms, err)
	}
	if err := p.stop(); err != nil {
		t.Error(err)
	}
	strays := p.countOutput("unmounted a volume mount that no reference holds")
	remounts := p.countOutput("remounted a volume that has references but was not mounted")
	report(t, "dockplug-volume", &vt.st, fmt.Sprintf("; Reconcile unmounted %d stray mounts and remounted %d volumes", strays, remounts))
}

type volKey struct{ vol, id string }

// pending counts the ambiguous calls on one key since the last check.
type pending struct{ mounts, unmounts int }

type volTorture struct {
	p         *proc
	c         *volume.Client
	admin     *local.AdminClient
	vols      []string
	mountRoot string // where the plugin mounts volumes, symlinks resolved

	mu    sync.Mutex
	exp   map[volKey]int      // acknowledged Mounts minus acknowledged Unmounts
	taint map[volKey]*pending // keys with ambiguous calls, not touched until the check
	owner map[volKey]int      // worker that uses the key
	st    stats
}

// maxHeld bounds the references one worker holds.
const maxHeld = 6

func newMountID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b) // 64 hex, like the daemon's
}

func (vt *volTorture) op(w int, r *mrand.Rand, clock *killClock) {
	vt.mu.Lock()
	var held []volKey
	n := 0
	for k, c := range vt.exp {
		if vt.owner[k] == w && vt.taint[k] == nil && c > 0 {
			held = append(held, k)
			n += c
		}
	}
	vt.mu.Unlock()
	sort.Slice(held, func(i, j int) bool { return held[i].id < held[j].id }) // map order is not the seed's
	mount := n == 0 || (n < maxHeld && r.IntN(2) == 0)
	var k volKey
	switch {
	case mount && (len(held) == 0 || r.IntN(3) > 0):
		k = volKey{vt.vols[r.IntN(len(vt.vols))], newMountID()}
	default:
		// A repeated Mount of a held ID (docker cp), or an Unmount.
		k = held[r.IntN(len(held))]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The daemon asks Get before each Mount and Unmount; if it cannot,
	// it sends neither.
	if _, err := vt.c.Get(ctx, &volume.GetRequest{Name: k.vol}); err != nil {
		return
	}
	b := clock.begin()
	var err error
	if mount {
		_, err = vt.c.Mount(ctx, &volume.MountRequest{Name: k.vol, ID: k.id})
	} else {
		err = vt.c.Unmount(ctx, &volume.UnmountRequest{Name: k.vol, ID: k.id})
	}
	overlapped := clock.overlapped(b)

	vt.mu.Lock()
	defer vt.mu.Unlock()
	vt.st.ops++
	vt.owner[k] = w
	switch {
	case err == nil:
		vt.st.acked++
		if mount {
			vt.exp[k]++
		} else {
			vt.exp[k]--
		}
	case ambiguousCall(err, overlapped):
		vt.st.ambiguous++
		pd := vt.taint[k]
		if pd == nil {
			pd = &pending{}
			vt.taint[k] = pd
		}
		if mount {
			pd.mounts++
		} else {
			pd.unmounts++
		}
	default:
		vt.st.reject(fmt.Errorf("%s %s: %w", map[bool]string{true: "mount", false: "unmount"}[mount], k.vol, err))
	}
}

func (vt *volTorture) check(cycle string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vt.mu.Lock()
	defer vt.mu.Unlock()
	held := map[string]int{} // volume -> total references
	for _, v := range vt.vols {
		res, err := vt.admin.Refs(ctx, v)
		if err != nil {
			vt.st.violate("%s: read the references of %s: %v", cycle, v, err)
			continue
		}
		ids := map[string]bool{}
		for id := range res.Refs {
			ids[id] = true
		}
		for k := range vt.exp {
			if k.vol == v {
				ids[k.id] = true
			}
		}
		for k := range vt.taint {
			if k.vol == v {
				ids[k.id] = true
			}
		}
		for id := range ids {
			k := volKey{v, id}
			got, want := res.Refs[id], vt.exp[k]
			lo, hi := want, want
			if pd := vt.taint[k]; pd != nil {
				lo, hi = want-pd.unmounts, want+pd.mounts
			}
			if got < lo || got > hi {
				vt.st.violate("%s: volume %s ID %.12s: %d references, want %d (acknowledged) within [%d, %d] (ambiguous calls)", cycle, v, id, got, want, lo, hi)
			}
			if vt.taint[k] != nil {
				vt.st.ambApplied += abs(got - want)
			}
			// Adopt the plugin's count: the daemon would not know better.
			if got > 0 {
				vt.exp[k] = got
			} else {
				delete(vt.exp, k)
			}
			delete(vt.taint, k)
			held[v] += got
		}
	}
	ms, err := mountsUnder(vt.mountRoot)
	if err != nil {
		vt.st.violate("%s: %v", cycle, err)
		return
	}
	mounted := map[string]int{}
	for _, mp := range ms {
		mounted[mp]++
	}
	for _, v := range vt.vols {
		mp := filepath.Join(vt.mountRoot, v)
		want := 0
		if held[v] > 0 {
			want = 1
		}
		if mounted[mp] != want {
			vt.st.violate("%s: volume %s has %d references and %d mounts at %s, want %d", cycle, v, held[v], mounted[mp], mp, want)
		}
		delete(mounted, mp)
	}
	for mp, n := range mounted {
		vt.st.violate("%s: %d mounts at %s, which is no volume's", cycle, n, mp)
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
