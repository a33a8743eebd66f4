package cluster

import (
	"errors"
	"net"
)

// Zero-copy response bodies. A Content-Length body that no filter reads
// goes from the upstream's socket to the client's without passing through
// weft's memory: on Linux, through a pipe with splice(2), up to 256 KiB per
// call each way (what the HTTP/1.1 path otherwise copies 64 KiB at a time
// through user space). Go's own io.Copy between two *net.TCPConn splices
// too, but cannot tell which side failed; this copy can, so an upstream
// that breaks mid-body is still told apart from a client that went away.

// Splicer is a ResponseBody that can copy the rest of itself to a TCP
// connection in the kernel.
type Splicer interface {
	// SpliceTo copies the rest of the body to dst. ok is false when it
	// cannot (a chunked or close-delimited body, a TLS upstream, a short
	// body, another OS): nothing was read then, and the caller copies the
	// body itself. tick is called before each step, to push dst's write
	// deadline ahead. An error is the upstream's (as Read's) unless it is
	// a *WriteError, dst's.
	SpliceTo(dst *net.TCPConn, tick func()) (n int64, ok bool, err error)
}

// WriteError is a write to the client that failed during SpliceTo.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "writing the response body: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// IsWriteError reports whether err is a WriteError.
func IsWriteError(err error) bool {
	var we *WriteError
	return errors.As(err, &we)
}

// spliceMin is the smallest body spliced: below it a pipe's two
// syscalls and its setup cost more than the copies they save.
const spliceMin = 256 << 10

// upstreamTCP is the plain TCP connection under a pooled upstream
// connection (nil over TLS), for a caller that reads or writes it itself:
// the connection's deadlines are set on it at once from then on (not
// kept lazily: sockio), so they bound the caller's calls.
func upstreamTCP(c net.Conn) *net.TCPConn {
	if cc, ok := c.(*countedConn); ok {
		if cc.sock != nil {
			cc.sock.Settle()
		}
		c = cc.Conn
	}
	tc, _ := c.(*net.TCPConn)
	return tc
}

// SpliceTo is Splicer's for an HTTP/1.1 Content-Length body.
func (b *h1Body[C]) SpliceTo(dst *net.TCPConn, tick func()) (int64, bool, error) {
	if b.eof || b.err != nil || b.chunked || b.cl < 0 || b.left < spliceMin || !spliceOK {
		return 0, false, nil
	}
	src := upstreamTCP(b.cc.Conn())
	if src == nil {
		return 0, false, nil
	}
	var total int64
	// What the reader holds of the body goes first.
	if k := min(b.br.Buffered(), b.left); k > 0 {
		tick()
		p, _ := b.br.Peek(k)
		n, err := dst.Write(p)
		_, _ = b.br.Discard(n)
		b.left -= n
		total += int64(n)
		if err != nil {
			return total, true, &WriteError{Err: err}
		}
	}
	n, err := b.splice(src, dst, tick)
	total += n
	if err != nil && !IsWriteError(err) {
		b.err = err
	}
	return total, true, err
}
