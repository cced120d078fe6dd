// Package torture kills the real dockplug binary with kill -9 at random
// moments while several clients drive it the way dockerd does, and checks
// after each restart that the plugin's durable state agrees with what the
// clients were told (issue 10, section 3).
//
// Each test builds cmd/dockplug once, serves one plugin from it with its
// own --state-dir and --socket-dir in a temp directory (nothing appears in
// /run/docker/plugins), and runs -torture.kills cycles of: clients busy,
// kill -9 after a delay drawn uniformly over -torture.busy, restart at once
// (the clients' retries reach the new process), clients paused, invariants
// checked through the plugin. The clients use plugin.WithDrainedRetry, so a
// retry after the plugin read a request carries what the daemon's would:
// an empty body. With -torture.resend they resend the whole body instead
// (plugin.Client's default): a Mount, Unmount, RequestAddress or
// ReleaseAddress that the killed process applied is then applied a second
// time by the new one, and the checks report that as violations.
//
// A call counts as acknowledged when it got a success answer: then it took
// effect exactly once (a retry that reached a plugin with the request's
// body is the first attempt that did). A call that failed with an answer,
// and was not in flight at a kill, took no effect. A call in flight at a
// kill that did not succeed, or that got no answer at all, is ambiguous:
// it may or may not have taken effect. The checks allow exactly these
// calls either way, count them, and after each check adopt what the plugin
// says about them, so that every cycle starts from an exact model.
//
// Default sizes fit CI (go test ./...); run by hand at the size:
//
//	go test ./torture/ -v -torture.kills=100
package torture
