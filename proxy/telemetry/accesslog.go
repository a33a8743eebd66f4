package telemetry

import (
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/weftmesh/weft/proxy/config"
)

// AccessLogFields lists the fields an access log line may carry, in order.
var AccessLogFields = []string{
	"start_time", "method", "path", "authority", "protocol", "status", "response_flags",
	"bytes_received", "bytes_sent", "duration_ms", "upstream_host", "upstream_cluster", "route",
	"request_id", "user_agent", "x_forwarded_for", "downstream_remote", "peer_principal", "trace_id", "retries",
}

// Entry is one finished request as the access log sees it. The proxy fills
// one per request only when access logging is on.
type Entry struct {
	Start          time.Time
	Method, Path   []byte
	Authority      []byte
	Protocol       []byte
	Status         int
	ResponseFlags  string
	BytesReceived  int
	BytesSent      int
	Duration       time.Duration
	UpstreamHost   string
	Cluster, Route string
	RequestID      []byte
	UserAgent      []byte
	XForwardedFor  []byte
	Remote         string
	PeerPrincipal  string
	TraceID        []byte
	Retries        int
}

// AccessLog writes one structured line per request.
type AccessLog struct {
	log    *zap.Logger
	fields uint32 // bit i set: AccessLogFields[i] is written
	close  func()
}

// NewAccessLog opens the sink named by c.Path ("stdout", "stderr" or a file)
// with the configured encoder. A disabled config gives nil, and a nil
// *AccessLog logs nothing.
func NewAccessLog(c config.AccessLog) (*AccessLog, error) {
	if !c.Enabled {
		return nil, nil
	}
	var ws zapcore.WriteSyncer
	closer := func() {}
	switch c.Path {
	case "", "stdout":
		ws = zapcore.Lock(os.Stdout)
	case "stderr":
		ws = zapcore.Lock(os.Stderr)
	default:
		f, err := os.OpenFile(c.Path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("access_log.path: %w", err)
		}
		ws = zapcore.Lock(f)
		closer = func() { _ = f.Close() }
	}
	ec := zapcore.EncoderConfig{MessageKey: "", TimeKey: "", LineEnding: zapcore.DefaultLineEnding}
	var enc zapcore.Encoder
	switch c.Format {
	case "", "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		closer()
		return nil, fmt.Errorf("access_log.format: unknown format %q (want json or console)", c.Format)
	}
	a := &AccessLog{log: zap.New(zapcore.NewCore(enc, ws, zapcore.InfoLevel)), close: closer}
	if len(c.Fields) == 0 {
		a.fields = 1<<len(AccessLogFields) - 1
	}
	for _, f := range c.Fields {
		i := indexOf(f)
		if i < 0 {
			closer()
			return nil, fmt.Errorf("access_log.fields: unknown field %q", f)
		}
		a.fields |= 1 << i
	}
	return a, nil
}

func indexOf(name string) int {
	for i, f := range AccessLogFields {
		if f == name {
			return i
		}
	}
	return -1
}

// Close flushes and closes the sink.
func (a *AccessLog) Close() {
	if a == nil {
		return
	}
	_ = a.log.Sync()
	a.close()
}

// Log writes e.
func (a *AccessLog) Log(e *Entry) {
	if a == nil {
		return
	}
	fs := make([]zap.Field, 0, len(AccessLogFields))
	add := func(i int, f zap.Field) {
		if a.fields&(1<<i) != 0 {
			fs = append(fs, f)
		}
	}
	add(0, zap.String("start_time", e.Start.UTC().Format(time.RFC3339Nano)))
	add(1, zap.ByteString("method", e.Method))
	add(2, zap.ByteString("path", e.Path))
	add(3, zap.ByteString("authority", e.Authority))
	add(4, zap.ByteString("protocol", e.Protocol))
	add(5, zap.Int("status", e.Status))
	add(6, zap.String("response_flags", orDash(e.ResponseFlags)))
	add(7, zap.Int("bytes_received", e.BytesReceived))
	add(8, zap.Int("bytes_sent", e.BytesSent))
	add(9, zap.Float64("duration_ms", float64(e.Duration.Microseconds())/1000))
	add(10, zap.String("upstream_host", e.UpstreamHost))
	add(11, zap.String("upstream_cluster", e.Cluster))
	add(12, zap.String("route", e.Route))
	add(13, zap.ByteString("request_id", e.RequestID))
	add(14, zap.ByteString("user_agent", e.UserAgent))
	add(15, zap.ByteString("x_forwarded_for", e.XForwardedFor))
	add(16, zap.String("downstream_remote", e.Remote))
	add(17, zap.String("peer_principal", e.PeerPrincipal))
	add(18, zap.ByteString("trace_id", e.TraceID))
	add(19, zap.Int("retries", e.Retries))
	a.log.Info("", fs...)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
