package telemetry

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

// entry is a request with every field set.
func entry() *Entry {
	return &Entry{
		Start: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("x", 3600)), Method: []byte("POST"),
		Path: []byte("/orders"), Authority: []byte("shop.local"), Protocol: []byte("HTTP/1.1"), Status: 503,
		ResponseFlags: "UF,URX", BytesReceived: 12, BytesSent: 34, Duration: 1500 * time.Microsecond,
		UpstreamHost: "10.0.0.7:8080", Cluster: "orders", Route: "orders-route", RequestID: []byte("rid-1"),
		UserAgent: []byte("curl/8"), XForwardedFor: []byte("1.2.3.4"), Remote: "10.0.0.1:5555",
		PeerPrincipal: "spiffe://weft.local/ns/shop/sa/web", TraceID: []byte("0af7651916cd43dd8448eb211c80319c"), Retries: 2,
	}
}

// readLines reads the JSON lines of the log at path.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

func TestAccessLogWritesEveryFieldByDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := NewAccessLog(config.AccessLog{Enabled: true, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	a.Log(entry())
	a.Close()
	lines := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	want := map[string]any{
		"start_time": "2026-01-02T02:04:05.000006Z", "method": "POST", "path": "/orders", "authority": "shop.local",
		"protocol": "HTTP/1.1", "status": 503.0, "response_flags": "UF,URX", "bytes_received": 12.0, "bytes_sent": 34.0,
		"duration_ms": 1.5, "upstream_host": "10.0.0.7:8080", "upstream_cluster": "orders", "route": "orders-route",
		"request_id": "rid-1", "user_agent": "curl/8", "x_forwarded_for": "1.2.3.4", "downstream_remote": "10.0.0.1:5555",
		"peer_principal": "spiffe://weft.local/ns/shop/sa/web", "trace_id": "0af7651916cd43dd8448eb211c80319c", "retries": 2.0,
	}
	if !reflect.DeepEqual(lines[0], want) {
		t.Fatalf("line\n %v\nwant\n %v", lines[0], want)
	}
	if len(want) != len(AccessLogFields) {
		t.Fatalf("the test checks %d fields, AccessLogFields has %d", len(want), len(AccessLogFields))
	}
}

func TestAccessLogWritesOnlyChosenFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := NewAccessLog(config.AccessLog{Enabled: true, Path: path, Fields: []string{"status", "response_flags", "retries"}})
	if err != nil {
		t.Fatal(err)
	}
	a.Log(entry())
	e := entry()
	e.ResponseFlags, e.Retries, e.Status = "", 0, 200
	a.Log(e)
	a.Close()
	lines := readLines(t, path)
	want := []map[string]any{
		{"status": 503.0, "response_flags": "UF,URX", "retries": 2.0},
		{"status": 200.0, "response_flags": "-", "retries": 0.0}, // no flags: "-", as Envoy writes
	}
	if !reflect.DeepEqual(lines, want) {
		t.Fatalf("lines %v, want %v", lines, want)
	}
}

func TestAccessLogConsoleFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	a, err := NewAccessLog(config.AccessLog{Enabled: true, Path: path, Format: "console", Fields: []string{"method", "status"}})
	if err != nil {
		t.Fatal(err)
	}
	a.Log(entry())
	a.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); !strings.Contains(got, `"method": "POST"`) || !strings.Contains(got, `"status": 503`) || strings.Count(got, "\n") != 1 {
		t.Fatalf("console line %q", got)
	}
}

func TestAccessLogAppendsToAnExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte(`{"earlier":true}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := NewAccessLog(config.AccessLog{Enabled: true, Path: path, Fields: []string{"status"}})
	if err != nil {
		t.Fatal(err)
	}
	a.Log(entry())
	a.Close()
	if lines := readLines(t, path); len(lines) != 2 || lines[0]["earlier"] != true || lines[1]["status"] != 503.0 {
		t.Fatalf("lines %v, want the earlier line kept and one appended", lines)
	}
}

func TestAccessLogRefusals(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		c    config.AccessLog
		want string
	}{
		{"format", config.AccessLog{Enabled: true, Path: filepath.Join(dir, "a.log"), Format: "xml"}, `access_log.format: unknown format "xml"`},
		{"field", config.AccessLog{Enabled: true, Path: filepath.Join(dir, "b.log"), Fields: []string{"status", "latency"}}, `access_log.fields: unknown field "latency"`},
		{"path", config.AccessLog{Enabled: true, Path: filepath.Join(dir, "no", "such", "dir.log")}, "access_log.path:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAccessLog(tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) || a != nil {
				t.Fatalf("got %v, %v; want an error saying %q", a, err, tc.want)
			}
		})
	}
}

// TestDisabledAccessLogIsNil: a disabled log is nil, and nil logs nothing
// and closes without panicking (the proxy calls both unconditionally).
func TestDisabledAccessLogIsNil(t *testing.T) {
	a, err := NewAccessLog(config.AccessLog{Enabled: false, Path: filepath.Join(t.TempDir(), "x.log")})
	if err != nil || a != nil {
		t.Fatalf("disabled: %v, %v; want nil, nil", a, err)
	}
	a.Log(entry())
	a.Close()
}

// TestAccessLogFieldsMatchConfig: the config validates field names against
// its own list; a field added to one list and not the other would be
// accepted and never written, or written and never accepted.
func TestAccessLogFieldsMatchConfig(t *testing.T) {
	if got := config.AccessLogFields(); !reflect.DeepEqual(got, AccessLogFields) {
		t.Fatalf("config allows %v\ntelemetry writes %v", got, AccessLogFields)
	}
}
