// Package sockio reads and writes a plain TCP socket on the data path
// without the Go runtime's blocking-syscall bookkeeping.
//
// Go's net package makes every read and write through syscall.Syscall,
// which tells the scheduler the goroutine may block in the kernel: the
// goroutine's P is marked as in a syscall, and the monitor thread (sysmon)
// takes the P away and starts another thread when the call lasts more
// than a few tens of microseconds. A socket's file descriptor is
// non-blocking, so its reads and writes never wait in the kernel; but on
// a proxy pinned to one core with its upstream, a loopback write wakes the
// upstream, which then runs before the write returns, and the scheduler
// pays for a thread hand-off it did not need (futex wake-ups, sysmon's
// 20 µs naps, a second thread taking the P). Socket reads the same.
//
// Socket does those reads and writes as raw system calls inside the
// descriptor's syscall.RawConn: the netpoller still parks the goroutine
// when the socket is not ready (EAGAIN), deadlines and Close work as they
// do for net.TCPConn, and errors read the same (net.OpError with "read" or
// "write", io.EOF at the end).
//
// It must not be used for anything that can block in the kernel: only
// reads and writes of a socket the net package made non-blocking.
package sockio
