//go:build !unix

package bench

// haproxyMaxConn is 256, what the Unix version falls back to when the
// descriptor limit cannot be read: there is no RLIMIT_NOFILE here (and no
// HAProxy to start: proc.Start refuses outside Unix).
func haproxyMaxConn() int { return 256 }
