package proxy

import "syscall"

// setRcvBuf sets a socket's SO_RCVBUF (before connect, so the window the
// handshake offers is already small).
func setRcvBuf(fd uintptr, n int) error {
	return syscall.SetsockoptInt(syscall.Handle(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
}
