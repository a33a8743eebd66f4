//go:build linux && race

package sockio

import "syscall"

// Under the race detector the calls go through syscall.Read and
// syscall.Write: those tell the detector that what a goroutine did before
// writing to a socket happens before what another does after reading it,
// which raw calls would hide (a test that sets a value, then sends a
// request its server reads, would report a race that is not one).

func recv(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return n, errno(err)
}

func send(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return n, errno(err)
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}
