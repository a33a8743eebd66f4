//go:build race

package config

// raceEnabled: the race detector makes parsing megabytes of YAML take
// tens of seconds.
const raceEnabled = true
