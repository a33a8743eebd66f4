package loopback

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
)

// RefusedAddr is a 127.0.0.1 address that refuses connections until
// release is called: a socket is bound to its port and never listens.
// Closing a 127.0.0.1:0 listener does not give that: its port goes back
// to the kernel, which may hand it to the next server on the machine that
// binds port 0, and a connection meant to be refused reaches that server.
// The bound socket keeps the port (it does not set SO_REUSEADDR, so no
// other bind shares it, and no outgoing connection takes it as its own
// port) while a connection to it is answered with a reset. release may
// be called more than once.
func RefusedAddr() (addr string, release func(), err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return "", nil, fmt.Errorf("refused address: socket: %w", err)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("refused address: bind: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("refused address: getsockname: %w", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("refused address: bound to %T", sa)
	}
	// Once: a second close could close another file that reused fd.
	var once sync.Once
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(in4.Port)), func() { once.Do(func() { syscall.Close(fd) }) }, nil
}
