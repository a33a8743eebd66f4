package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy/config"
)

// grpcServer serves grpc-go's health service (plaintext HTTP/2) on
// loopback until the test ends; withHealth false serves no service at all.
func grpcServer(t testing.TB, withHealth bool) (string, *health.Server) {
	t.Helper()
	addr, hs, _ := countedGRPCServer(t, withHealth)
	return addr, hs
}

// countingHealth is grpc-go's health service counting the checks it
// answers.
type countingHealth struct {
	*health.Server
	checks *atomic.Int64
}

func (h countingHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	defer h.checks.Add(1)
	return h.Server.Check(ctx, req)
}

// countedGRPCServer is grpcServer, also returning how many health checks
// it has answered.
func countedGRPCServer(t testing.TB, withHealth bool) (string, *health.Server, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	checks := new(atomic.Int64)
	if withHealth {
		healthpb.RegisterHealthServer(srv, countingHealth{hs, checks})
	}
	done := make(chan struct{})
	go func() {
		_ = srv.Serve(ln)
		close(done)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return ln.Addr().String(), hs, checks
}

func grpcChecks(service string) *config.HealthCheck {
	return &config.HealthCheck{
		Interval:           config.Duration(20 * time.Millisecond),
		Timeout:            config.Duration(500 * time.Millisecond),
		HealthyThreshold:   2,
		UnhealthyThreshold: 2,
		GRPC:               &config.GRPCHealthCheck{Service: service},
	}
}

// The real grpc-go health server flips a's service to NOT_SERVING: a
// leaves the balancer (every pick is b) and rejoins it once SERVING again.
func TestGRPCHealthCheckFollowsServingStatus(t *testing.T) {
	const svc = "weft.test.Echo"
	a, ha, checksA := countedGRPCServer(t, true)
	b, hb, checksB := countedGRPCServer(t, true)
	for _, hs := range []*health.Server{ha, hb} {
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}
	for _, protocol := range []string{"http2", "auto"} {
		t.Run(protocol, func(t *testing.T) {
			c := start(t, config.Cluster{Name: "g", Protocol: protocol, Endpoints: static(a, b), HealthCheck: grpcChecks(svc), PanicThreshold: -1}, Options{})
			before := c.Stats().HealthCheckFailures.Load()
			// A few rounds of passing checks: once a third check of each
			// endpoint has been answered, the cluster has the results of
			// at least two (an endpoint's checks run one after another).
			a0, b0 := checksA.Load(), checksB.Load()
			eventually(t, "three checks of each endpoint", func() bool { return checksA.Load() >= a0+3 && checksB.Load() >= b0+3 })
			if got := c.Stats().HealthCheckFailures.Load(); got != before {
				t.Fatalf("%d checks of SERVING endpoints failed", got-before)
			}
			ha.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
			eventually(t, "a unhealthy", func() bool {
				return !c.Status().Endpoints[0].Healthy && !inView(c, endpointByAddr(c, a))
			})
			if got := picks(c, 100); got[a] != 0 || got[b] != 100 {
				t.Fatalf("traffic while a is NOT_SERVING: %v", got)
			}
			ha.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
			eventually(t, "a healthy again", func() bool {
				return c.Status().Endpoints[0].Healthy && inView(c, endpointByAddr(c, a))
			})
			if got := picks(c, 100); got[a] != 50 || got[b] != 50 {
				t.Fatalf("traffic after a is SERVING again: %v", got)
			}
			// The checks were not counted as the endpoints' requests.
			for _, e := range c.view.Load().set.endpoints {
				if e.total.Load() != 0 || e.active.Load() != 0 {
					t.Errorf("endpoint %s counts %d requests, %d active", e.addr, e.total.Load(), e.active.Load())
				}
			}
		})
	}
}

// Answers that are not SERVING fail: an unknown service, the overall
// status set to NOT_SERVING, a server without the health service
// (UNIMPLEMENTED), and a plain HTTP/1.1 server.
func TestGRPCHealthCheckFailures(t *testing.T) {
	overall, ho := grpcServer(t, true)
	noHealth, _ := grpcServer(t, false)
	http1 := serve(t, identity(new(string)))
	tests := []struct {
		name, service, addr string
		setup               func()
	}{
		{"service unknown", "no.such.Service", overall, func() {}},
		{"overall not serving", "", overall, func() { ho.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING) }},
		{"unimplemented", "", noHealth, func() {}},
		{"http1 server", "", http1, func() {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			c := start(t, config.Cluster{Name: "g", Protocol: "http2", Endpoints: static(tt.addr), HealthCheck: grpcChecks(tt.service), PanicThreshold: -1}, Options{})
			eventually(t, "endpoint unhealthy", func() bool {
				return !c.Status().Endpoints[0].Healthy && !inView(c, endpointByAddr(c, tt.addr))
			})
			if e := c.Pick(0, false, nil); e != nil {
				t.Fatalf("picked %s, the only endpoint, while it is unhealthy", e.Address())
			}
		})
	}
}

func TestEncodeHealthRequestIsTheProtoEncoding(t *testing.T) {
	for _, svc := range []string{"", "helloworld.Greeter", string(bytes.Repeat([]byte("s"), 300))} {
		want, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		got := encodeHealthRequest(svc)
		if got[0] != 0 || int(got[1])<<24|int(got[2])<<16|int(got[3])<<8|int(got[4]) != len(want) || !bytes.Equal(got[5:], want) {
			t.Errorf("service %.20q: frame % x, want the message % x", svc, got, want)
		}
	}
}

func TestDecodeHealthResponse(t *testing.T) {
	frame := func(msg []byte) []byte {
		return append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
	}
	serving, _ := proto.Marshal(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
	notServing, _ := proto.Marshal(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING})
	tests := []struct {
		name   string
		body   []byte
		status uint64
		bad    bool
	}{
		{"serving", frame(serving), 1, false},
		{"not serving", frame(notServing), 2, false},
		{"empty message is UNKNOWN", frame(nil), 0, false},
		// Unknown fields of every wire type before the status are skipped
		// (a tag is field<<3 | wire type; varints are wire type 0).
		{"unknown fields", frame([]byte{2 << 3, 0x96, 0x01, 3<<3 | 1, 1, 2, 3, 4, 5, 6, 7, 8, 4<<3 | 2, 2, 'h', 'i', 5<<3 | 5, 1, 2, 3, 4, 1 << 3, 1}), 1, false},
		{"last status wins", frame([]byte{1 << 3, 2, 1 << 3, 1}), 1, false},
		{"no frame", []byte{0, 0, 0}, 0, true},
		{"compressed", []byte{1, 0, 0, 0, 0}, 0, true},
		{"short frame", []byte{0, 0, 0, 0, 3, 8, 1}, 0, true},
		{"two frames", append(frame(serving), frame(serving)...), 0, true},
		{"field zero", frame([]byte{0 << 3, 1}), 0, true},
		{"truncated varint", frame([]byte{1 << 3, 0x80}), 0, true},
		{"length past end", frame([]byte{4<<3 | 2, 9, 'x'}), 0, true},
		{"group wire type", frame([]byte{4<<3 | 3}), 0, true},
		// Each wire type's value cut off at the very end of the message
		// (nothing after the tag, one byte short), and exactly long
		// enough as the last field.
		{"varint missing", frame([]byte{1 << 3, 1, 1 << 3}), 0, true},
		{"fixed64 one short", frame([]byte{1 << 3, 1, 3<<3 | 1, 1, 2, 3, 4, 5, 6, 7}), 0, true},
		{"fixed64 last", frame([]byte{1 << 3, 1, 3<<3 | 1, 1, 2, 3, 4, 5, 6, 7, 8}), 1, false},
		{"fixed32 one short", frame([]byte{1 << 3, 1, 5<<3 | 5, 1, 2, 3}), 0, true},
		{"fixed32 last", frame([]byte{1 << 3, 1, 5<<3 | 5, 1, 2, 3, 4}), 1, false},
		{"length missing", frame([]byte{1 << 3, 1, 4<<3 | 2}), 0, true},
		{"length one past end", frame([]byte{1 << 3, 1, 4<<3 | 2, 2, 'x'}), 0, true},
		{"length to the end", frame([]byte{1 << 3, 1, 4<<3 | 2, 1, 'x'}), 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, err := decodeHealthResponse(tt.body)
			if tt.bad {
				if !errors.Is(err, errMalformedHealth) {
					t.Fatalf("decoded % x as status %d, %v; want malformed", tt.body, status, err)
				}
				return
			}
			if err != nil || status != tt.status {
				t.Fatalf("decoded % x as %d, %v; want %d", tt.body, status, err, tt.status)
			}
		})
	}
}

// FuzzDecodeHealthResponse checks the decoder never panics and agrees
// with the protobuf runtime on every message both accept.
func FuzzDecodeHealthResponse(f *testing.F) {
	f.Add([]byte{8, 1})
	f.Add([]byte{8, 2, 0x12, 1, 'x'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) > 255 {
			return
		}
		body := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
		status, err := decodeHealthResponse(body)
		var m healthpb.HealthCheckResponse
		perr := proto.Unmarshal(msg, &m)
		if err == nil && perr == nil && uint64(uint32(m.Status)) != status&0xffffffff {
			t.Fatalf("% x: decoded status %d, protobuf says %d", msg, status, m.Status)
		}
	})
}

// rawGRPC is what rawGRPCHealth answers, and what it saw.
type rawGRPC struct {
	size   atomic.Int64 // of a SERVING answer, padded with an unknown field
	answer atomic.Value // "" (SERVING), or a failure: see rawGRPCHealth
	host   atomic.Value // the last check's :authority
}

// rawGRPCHealth serves Health/Check over h2c with net/http, answering as
// a says, and records the :authority of each check.
func rawGRPCHealth(t *testing.T, a *rawGRPC) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.host.Store(r.Host)
		_, _ = io.Copy(io.Discard, r.Body)
		// 5 bytes of frame, 2 of status, then field 4 with a 2-byte
		// length and pad bytes.
		pad := int(a.size.Load()) - 5 - 2 - 1 - 2
		msg := []byte{1 << 3, grpcServing, 4<<3 | 2}
		msg = binary.AppendUvarint(msg, uint64(pad))
		msg = append(msg, bytes.Repeat([]byte{'p'}, pad)...)
		frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
		w.Header().Set("Content-Type", "application/grpc")
		answer, _ := a.answer.Load().(string)
		switch answer {
		case "trailers-only": // an error answered in the headers alone
			w.Header().Set("Grpc-Status", "12")
			w.Header().Set("Grpc-Message", "no health here")
			w.WriteHeader(200)
		case "error in trailers":
			w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
			w.WriteHeader(200)
			w.Header().Set("Grpc-Status", "14")
			w.Header().Set("Grpc-Message", "going down")
		case "no status":
			_, _ = w.Write(append(frame, msg...))
		default:
			w.Header().Set("Trailer", "Grpc-Status")
			_, _ = w.Write(append(frame, msg...))
			w.Header().Set("Grpc-Status", "0")
		}
	})}
	done := make(chan struct{})
	go func() {
		_ = srv.Serve(ln)
		close(done)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// A check sends the configured host as :authority (else the endpoint's
// address), and reads an answer of up to 1 KiB whole: 1024 bytes pass,
// 1025 are refused as no HealthCheckResponse.
func TestGRPCHealthCheckHostAndSizeBound(t *testing.T) {
	var a rawGRPC
	addr := rawGRPCHealth(t, &a)
	for _, want := range []string{"", "health.weft.test"} {
		hc := grpcChecks("")
		hc.Interval = config.Duration(time.Hour) // only the checks below
		hc.Timeout = config.Duration(30 * time.Second)
		hc.Host = want
		c := start(t, config.Cluster{Name: "g", Protocol: "http2", Endpoints: static(addr), HealthCheck: hc, PanicThreshold: -1}, Options{})
		e := endpointByAddr(c, addr)
		a.size.Store(1024)
		if err := c.checkGRPC(e); err != nil {
			t.Fatalf("host %q: a 1024-byte SERVING answer: %v", want, err)
		}
		if want == "" {
			want = addr
		}
		if got := a.host.Load(); got != want {
			t.Errorf("the check's :authority is %q, want %q", got, want)
		}
		a.size.Store(1025)
		if err := c.checkGRPC(e); !errors.Is(err, errMalformedHealth) {
			t.Fatalf("a 1025-byte answer: %v, want it refused as malformed", err)
		}
	}
}

// A failed check's error says the gRPC status and message, read from the
// trailers or, for a trailers-only answer, the headers; an answer with no
// status at all says so.
func TestGRPCHealthCheckErrors(t *testing.T) {
	var a rawGRPC
	a.size.Store(64)
	addr := rawGRPCHealth(t, &a)
	hc := grpcChecks("")
	hc.Interval = config.Duration(time.Hour)
	hc.Timeout = config.Duration(30 * time.Second)
	c := start(t, config.Cluster{Name: "g", Protocol: "http2", Endpoints: static(addr), HealthCheck: hc, PanicThreshold: -1}, Options{})
	e := endpointByAddr(c, addr)
	for answer, want := range map[string]string{
		"trailers-only":     "grpc-status 12: no health here",
		"error in trailers": "grpc-status 14: going down",
		"no status":         "no grpc-status in the answer",
	} {
		a.answer.Store(answer)
		err := c.checkGRPC(e)
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", answer, err, want)
		}
	}
}
