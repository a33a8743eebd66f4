package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/weftmesh/weft/proxy/config"
)

// gRPC health checks: a unary call of grpc.health.v1.Health/Check
// (https://github.com/grpc/grpc/blob/master/doc/health-checking.md) over
// the endpoint's HTTP/2 streaming transport, so a check dials as traffic
// does (connect_timeout, max_connections, mTLS) and shares its
// multiplexed connection. The two messages are tiny, so they are encoded
// by hand rather than pulling grpc-go into the proxy:
//
//	message HealthCheckRequest  { string service = 1; }
//	message HealthCheckResponse { ServingStatus status = 1; }
//	enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }

// grpcHealthPath is the method every check calls.
const grpcHealthPath = "/grpc.health.v1.Health/Check"

// grpcServing is HealthCheckResponse.ServingStatus SERVING.
const grpcServing = 1

// maxGRPCHealthResponse bounds the answer read: a HealthCheckResponse is a
// few bytes; anything this long is not one.
const maxGRPCHealthResponse = 1 << 10

// grpcHealth is health_check.grpc compiled: the request frame is built
// once and sent by every check.
type grpcHealth struct {
	Service string
	request []byte // a gRPC message frame holding the HealthCheckRequest
}

func compileGRPCHealth(g config.GRPCHealthCheck) *grpcHealth {
	return &grpcHealth{Service: g.Service, request: encodeHealthRequest(g.Service)}
}

// encodeHealthRequest returns a gRPC length-prefixed message (uncompressed)
// holding HealthCheckRequest{service}. Proto3 leaves an empty string out.
func encodeHealthRequest(service string) []byte {
	var msg []byte
	if service != "" {
		msg = append(msg, 1<<3|2) // field 1, length-delimited
		msg = binary.AppendUvarint(msg, uint64(len(service)))
		msg = append(msg, service...)
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	return append(frame, msg...)
}

// errMalformedHealth is a HealthCheckResponse that does not decode.
var errMalformedHealth = errors.New("malformed grpc.health.v1.HealthCheckResponse")

// decodeHealthResponse reads the status out of a response body holding
// one gRPC message frame with a HealthCheckResponse. Unknown fields are
// skipped, as proto3 requires; a missing status is UNKNOWN (0).
func decodeHealthResponse(body []byte) (status uint64, err error) {
	if len(body) < 5 {
		return 0, fmt.Errorf("%w: %d bytes, no message frame", errMalformedHealth, len(body))
	}
	if body[0] != 0 {
		// Not asked for (the check sends no grpc-accept-encoding).
		return 0, fmt.Errorf("%w: compressed message", errMalformedHealth)
	}
	n := binary.BigEndian.Uint32(body[1:5])
	msg := body[5:]
	if uint64(n) != uint64(len(msg)) {
		return 0, fmt.Errorf("%w: frame says %d bytes, body holds %d", errMalformedHealth, n, len(msg))
	}
	for len(msg) > 0 {
		tag, k := binary.Uvarint(msg)
		if k <= 0 || tag>>3 == 0 {
			return 0, errMalformedHealth
		}
		msg = msg[k:]
		switch tag & 7 {
		case 0: // varint
			v, k := binary.Uvarint(msg)
			if k <= 0 {
				return 0, errMalformedHealth
			}
			msg = msg[k:]
			if tag>>3 == 1 {
				status = v
			}
		case 1: // fixed64
			if len(msg) < 8 {
				return 0, errMalformedHealth
			}
			msg = msg[8:]
		case 2: // length-delimited
			l, k := binary.Uvarint(msg)
			if k <= 0 || l > uint64(len(msg)-k) {
				return 0, errMalformedHealth
			}
			msg = msg[k+int(l):]
		case 5: // fixed32
			if len(msg) < 4 {
				return 0, errMalformedHealth
			}
			msg = msg[4:]
		default:
			return 0, errMalformedHealth
		}
	}
	return status, nil
}

// servingStatusName names a HealthCheckResponse status for logs.
func servingStatusName(s uint64) string {
	switch s {
	case 0:
		return "UNKNOWN"
	case 1:
		return "SERVING"
	case 2:
		return "NOT_SERVING"
	case 3:
		return "SERVICE_UNKNOWN"
	}
	return strconv.FormatUint(s, 10)
}

// checkGRPC calls Health/Check on e: nil when the answer is grpc-status 0
// with status SERVING. It is bounded by the check's timeout (also sent as
// grpc-timeout, so the server gives up too) and by the cluster's life.
func (c *Cluster) checkGRPC(e *Endpoint) error {
	h := c.s.HealthCheck
	ctx, cancel := context.WithTimeout(c.ctx, h.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+e.addr+grpcHealthPath, bytes.NewReader(h.GRPC.request))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(h.GRPC.request))
	if h.Host != "" {
		req.Host = h.Host
	}
	req.Header = http.Header{
		"Content-Type": {"application/grpc"},
		"Te":           {"trailers"},
		"Grpc-Timeout": {strconv.FormatInt(max(h.Timeout.Milliseconds(), 1), 10) + "m"},
		"User-Agent":   {healthCheckUserAgent},
	}
	// h2down: protocol auto in plaintext speaks h2c, as gRPC needs. Not
	// RoundTrip: a check is not a request of the cluster's traffic (it
	// must not weigh in least_request's active counts).
	resp, err := e.roundTrip(req, true, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP status %d to %s", resp.StatusCode, grpcHealthPath)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		return fmt.Errorf("content-type %q is not gRPC", ct)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxGRPCHealthResponse+1))
	if err != nil {
		return err
	}
	if len(body) > maxGRPCHealthResponse {
		return fmt.Errorf("%w: over %d bytes", errMalformedHealth, maxGRPCHealthResponse)
	}
	// A trailers-only answer (an error) carries grpc-status in the headers.
	code := resp.Trailer.Get("Grpc-Status")
	if code == "" {
		code = resp.Header.Get("Grpc-Status")
	}
	if code != "0" {
		msg := resp.Trailer.Get("Grpc-Message")
		if msg == "" {
			msg = resp.Header.Get("Grpc-Message")
		}
		if code == "" {
			return errors.New("no grpc-status in the answer")
		}
		return fmt.Errorf("grpc-status %s: %s", code, msg)
	}
	status, err := decodeHealthResponse(body)
	if err != nil {
		return err
	}
	if status != grpcServing {
		return fmt.Errorf("health status %s", servingStatusName(status))
	}
	return nil
}
