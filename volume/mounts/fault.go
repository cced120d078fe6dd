package mounts

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Test-only fault injection, for the crash tests of this package and of
// e2e. Never set it in production.
//
// With DOCKPLUG_TEST_FAULT=POINT:pause in its environment, the process
// stops the first time it reaches POINT (one of the Fault* names): it
// writes the line
//
//	dockplug: test fault: paused at POINT
//
// to stderr, then sleeps for ever, holding the table's lock, so that the
// test can kill -9 it exactly there. The variable is read once, at start.
const EnvFault = "DOCKPLUG_TEST_FAULT"

// The points of Mount and Unmount between which a crash leaves a
// different state (see the package doc).
const (
	FaultMountBegin          = "volume.mount.begin"           // nothing done yet
	FaultMountAfterMount     = "volume.mount.after-mount"     // mounted (if it had to), not recorded
	FaultMountAfterRecord    = "volume.mount.after-record"    // recorded, not answered
	FaultUnmountBegin        = "volume.unmount.begin"         // nothing done yet
	FaultUnmountAfterRecord  = "volume.unmount.after-record"  // release recorded, not unmounted
	FaultUnmountAfterUnmount = "volume.unmount.after-unmount" // unmounted (if last), not answered
)

var faultPoints = []string{
	FaultMountBegin, FaultMountAfterMount, FaultMountAfterRecord,
	FaultUnmountBegin, FaultUnmountAfterRecord, FaultUnmountAfterUnmount,
}

// faultAt is the point to pause at; "" (the normal case) pauses nowhere.
var faultAt = parseFault(os.Getenv(EnvFault))

func parseFault(v string) string {
	if v == "" {
		return ""
	}
	point, action, _ := strings.Cut(v, ":")
	if action != "pause" || !slices.Contains(faultPoints, point) {
		fmt.Fprintf(os.Stderr, "dockplug: ignoring %s=%q: want POINT:pause, POINT one of %s\n", EnvFault, v, strings.Join(faultPoints, ", "))
		return ""
	}
	return point
}

func fault(point string) {
	if faultAt == "" || point != faultAt {
		return
	}
	fmt.Fprintf(os.Stderr, "dockplug: test fault: paused at %s\n", point)
	for {
		time.Sleep(time.Hour)
	}
}
