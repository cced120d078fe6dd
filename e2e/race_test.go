//go:build race

package e2e

// raceEnabled: the tests run with -race, so the plugin binary is built with
// it too, and a data race in the plugin fails its SIGTERM exit (status 66).
const raceEnabled = true
