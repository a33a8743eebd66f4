package cluster

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/valyala/fasthttp"
)

// FailureKind is what went wrong with one upstream attempt, as the retry
// policy and outlier detection see it.
type FailureKind uint8

const (
	// Other is any failure not listed below (protocol errors, bodies too
	// large, a nil error).
	Other FailureKind = iota
	// ConnectFailure means no connection could be made to the endpoint
	// (refused, unreachable, dial timeout). The request never left.
	ConnectFailure
	// Timeout means the deadline passed while writing the request or
	// waiting for the response (or waiting for a free pooled connection).
	Timeout
	// Reset means the connection broke or was closed by the upstream before
	// the whole response was read.
	Reset
	// Overflow means a circuit breaker of this cluster refused the attempt
	// (max connections, max pending). It says nothing about the endpoint's
	// health and is never fed to outlier detection.
	Overflow
)

// String names the kind for logs and metrics labels.
func (k FailureKind) String() string {
	switch k {
	case ConnectFailure:
		return "connect_failure"
	case Timeout:
		return "timeout"
	case Reset:
		return "reset"
	case Overflow:
		return "overflow"
	default:
		return "other"
	}
}

// ErrOverflow is wrapped by errors from Endpoint.Do when a cluster circuit
// breaker (max connections or max pending) refused the attempt.
var ErrOverflow = errors.New("upstream overflow")

// DialError is returned (wrapped by fasthttp's client, unchanged) when a
// connection to an endpoint could not be opened.
type DialError struct {
	// Addr is the endpoint's address.
	Addr string
	// Err is the dialer's error.
	Err error
}

// Error describes the failed dial.
func (e *DialError) Error() string { return "connect to " + e.Addr + ": " + e.Err.Error() }

// Unwrap returns the dialer's error.
func (e *DialError) Unwrap() error { return e.Err }

// Classify tells what kind of failure err is. It walks the wrap chain
// without allocating, so the data path may call it per attempt.
func Classify(err error) FailureKind {
	for depth := 0; err != nil && depth < 16; depth++ {
		if k, ok := classifyOne(err); ok {
			return k
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if k := Classify(e); k != Other {
					return k
				}
			}
			return Other
		default:
			return Other
		}
	}
	return Other
}

// classifyOne looks at one link of an error chain.
func classifyOne(err error) (FailureKind, bool) {
	switch e := err.(type) {
	case *DialError:
		return ConnectFailure, true
	case fasthttp.ErrNothingRead, *fasthttp.ErrNothingRead,
		fasthttp.ErrBrokenChunk, *fasthttp.ErrBrokenChunk:
		return Reset, true
	case syscall.Errno:
		switch e {
		case syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED:
			return Reset, true
		case syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH:
			return ConnectFailure, true
		case syscall.ETIMEDOUT:
			return Timeout, true
		}
		return Other, false
	}
	switch err {
	case ErrOverflow, fasthttp.ErrNoFreeConns:
		return Overflow, true
	case fasthttp.ErrDialTimeout:
		return ConnectFailure, true
	case fasthttp.ErrTimeout, os.ErrDeadlineExceeded:
		return Timeout, true
	case fasthttp.ErrConnectionClosed, io.EOF, io.ErrUnexpectedEOF, net.ErrClosed, errBadChunk:
		return Reset, true
	}
	if isTimeout(err) {
		return Timeout, true
	}
	return Other, false
}

// isTimeout reports whether err itself (not what it wraps) says it is a
// timeout, as net's and os's deadline errors do.
func isTimeout(err error) bool {
	t, ok := err.(interface{ Timeout() bool })
	return ok && t.Timeout()
}
