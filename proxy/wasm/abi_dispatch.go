package wasm

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/valyala/fasthttp"
)

// dispatchStatus is the pseudo-header a filter reads, in
// on_http_call_response, to learn why a call-out failed (Kong's name for
// it): Envoy delivers a failure as 0 headers and no reason.
const dispatchStatus = ":dispatch_status"

// Errors an Upstream returns for call-outs it could not send.
var (
	ErrUnknownCluster    = errors.New("unknown cluster")
	ErrNoHealthyEndpoint = errors.New("no healthy endpoint")
)

// Reasons a call-out fails, as :dispatch_status gives them and
// weft_wasm_callout_failures_total counts them (a closed set: bounded
// label cardinality).
var dispatchReasons = [...]string{"timeout", "connect_failure", "no_cluster", "no_healthy_endpoint", "reset", "failure"}

// DispatchStatus names why a call-out failed: one of timeout,
// connect_failure, no_cluster, no_healthy_endpoint, reset, failure.
func DispatchStatus(err error) string {
	return dispatchReasons[dispatchReason(err)]
}

func dispatchReason(err error) int {
	var op *net.OpError
	switch {
	case errors.Is(err, ErrUnknownCluster):
		return 2
	case errors.Is(err, ErrNoHealthyEndpoint):
		return 3
	case errors.Is(err, fasthttp.ErrDialTimeout), errors.As(err, &op) && op.Op == "dial", errors.Is(err, syscall.ECONNREFUSED):
		return 1
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return 0
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return 4
	}
	return 5
}
