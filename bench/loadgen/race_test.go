//go:build race

package loadgen

// raceEnabled: the race detector adds allocations of its own.
const raceEnabled = true
