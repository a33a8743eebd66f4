//go:build unix

package bench

import "syscall"

// haproxyMaxConn is HAProxy's maxconn: 4096, or less when the file
// descriptor limit is lower (HAProxy needs about two descriptors per
// connection and refuses to start when it cannot raise its limit that far).
func haproxyMaxConn() int {
	const want = 4096
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 256
	}
	if lim.Max >= 2*want+64 { // also RLIM_INFINITY
		return want
	}
	return max(int(lim.Max)/2-32, 16)
}
