//go:build race

package authz

// raceEnabled: the race detector makes sync.Pool drop items (regexp
// keeps its matchers in one), so allocation counts mean nothing.
const raceEnabled = true
