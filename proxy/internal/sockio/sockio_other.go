//go:build !linux

package sockio

import (
	"net"
	"syscall"
	"time"
)

// Available reports whether Socket works on this platform.
const Available = false

// Socket is only implemented on Linux; New returns nil elsewhere.
type Socket struct{}

// New returns nil: callers use the connection's own Read and Write.
func New(*net.TCPConn) *Socket { return nil }

// Conn is never called on this platform.
func (*Socket) Conn() *net.TCPConn { return nil }

// Read is never called on this platform.
func (*Socket) Read([]byte) (int, error) { return 0, syscall.ENOTSUP }

// Write is never called on this platform.
func (*Socket) Write([]byte) (int, error) { return 0, syscall.ENOTSUP }

// WriteRaw is never called on this platform.
func WriteRaw(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.ENOTSUP }

// SetDeadline is never called on this platform.
func (*Socket) SetDeadline(time.Time) error { return syscall.ENOTSUP }

// SetReadDeadline is never called on this platform.
func (*Socket) SetReadDeadline(time.Time) error { return syscall.ENOTSUP }

// SetWriteDeadline is never called on this platform.
func (*Socket) SetWriteDeadline(time.Time) error { return syscall.ENOTSUP }

// Settle is never called on this platform.
func (*Socket) Settle() {}
