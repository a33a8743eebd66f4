package proxy

import (
	"bytes"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// gRPC status codes weft answers with or retries on
// (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
const (
	grpcOK                = 0
	grpcCancelled         = 1
	grpcUnknown           = 2
	grpcDeadlineExceeded  = 4
	grpcPermissionDenied  = 7
	grpcResourceExhausted = 8
	grpcUnimplemented     = 12
	grpcInternal          = 13
	grpcUnavailable       = 14
	grpcUnauthenticated   = 16
)

// isGRPC reports whether a request carries gRPC (content-type
// application/grpc, application/grpc+proto, ...), not gRPC-Web.
func isGRPC(h *fasthttp.RequestHeader) bool {
	ct := h.ContentType()
	return bytes.HasPrefix(ct, []byte("application/grpc")) &&
		(len(ct) == len("application/grpc") || ct[len("application/grpc")] == '+' || ct[len("application/grpc")] == ';')
}

// grpcStatusFor maps the HTTP status of a local reply onto the gRPC code a
// gRPC client gets instead (the gRPC HTTP-to-status mapping; a timeout is
// DEADLINE_EXCEEDED, as the caller's deadline is what weft enforced).
func grpcStatusFor(httpStatus int, flags string) int {
	switch {
	case flags == "UT" || (len(flags) > 2 && flags[:3] == "UT,"):
		return grpcDeadlineExceeded
	}
	switch httpStatus {
	case 400:
		return grpcInternal
	case 401:
		return grpcUnauthenticated
	case 403:
		return grpcPermissionDenied
	case 404:
		return grpcUnimplemented
	case 408, 504:
		return grpcDeadlineExceeded
	case 413, 429:
		return grpcResourceExhausted
	case 502, 503:
		return grpcUnavailable
	}
	return grpcUnknown
}

// grpcTimeout parses a grpc-timeout header value: 1 to 8 digits and a unit
// (H, M, S, m, u, n).
func grpcTimeout(v []byte) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v[:len(v)-1]), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// formatGRPCTimeout writes d as a grpc-timeout value (at most 8 digits, in
// the finest unit that fits).
func formatGRPCTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit time.Duration
		c    byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}, {time.Hour, 'H'}} {
		if n := (d + u.unit - 1) / u.unit; n < 1e8 {
			return strconv.FormatInt(int64(n), 10) + string(u.c)
		}
	}
	return "99999999H"
}

// grpcPercentEncode encodes a grpc-message value (printable ASCII but '%'
// stays as is; the rest is %XX).
func grpcPercentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

// grpcToHTTP maps a gRPC status onto the HTTP status outlier detection and
// metrics see for it (Envoy's Grpc::Utility::grpcToHttpStatus).
func grpcToHTTP(code int) int {
	switch code {
	case 0:
		return 200
	case 1:
		return 499
	case 3, 9, 11:
		return 400
	case 4:
		return 504
	case 5:
		return 404
	case 6, 10:
		return 409
	case 7:
		return 403
	case 8:
		return 429
	case 12:
		return 501
	case 14:
		return 503
	case 16:
		return 401
	}
	return 500
}
