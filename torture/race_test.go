//go:build race

package torture

// raceEnabled: the tests run with -race, so the plugin binary is built
// with it too.
const raceEnabled = true
