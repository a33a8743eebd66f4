package loadgen

import (
	"errors"
	"io"
	"syscall"

	"github.com/valyala/fasthttp"
)

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// isReset reports a connection that broke under a request: reset, broken
// pipe, or closed before the first response byte.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, fasthttp.ErrConnectionClosed)
}
