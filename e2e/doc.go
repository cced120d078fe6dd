// Package e2e holds dockplug's end-to-end tests: the real dockplug binary
// serves its plugins to a real, private dockerd (internal/dockertest), and
// the tests drive them through the docker CLI the way users do.
//
// The tests live in _test.go files. Run them as root with
//
//	DOCKPLUG_E2E=require go test -race -count=1 -v ./e2e/
//
// Without DOCKPLUG_E2E=require they skip, with the reason, on hosts that
// cannot run dockerd (not root, no docker.io).
package e2e
