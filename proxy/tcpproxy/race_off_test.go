//go:build !race

package tcpproxy_test

// raceEnabled: the race detector makes allocation counts meaningless.
const raceEnabled = false
