package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

func TestAccessLogLines(t *testing.T) {
	up := testserver.Start(t, "up")
	path := filepath.Join(t.TempDir(), "access.log")
	cfg := strings.Replace(plainConfig, "    limits: {max_header_bytes: 4096, max_body_bytes: 1024}\n",
		"    access_log: {enabled: true, path: "+path+", fields: [method, path, status, upstream_cluster, request_id, response_flags, duration_ms]}\n", 1)
	_, url := startProxy(t, cfg, map[string]string{"up": up.Addr})
	c := &fasthttp.Client{}
	get(t, c, url+"/hello?x=1", "X-Request-Id", "rid-42")
	up.Status.Store(503)
	get(t, c, url+"/down")

	var lines []map[string]any
	eventually(t, 5*time.Second, "two access log lines", func() bool {
		f, err := os.Open(path)
		if err != nil {
			return false
		}
		defer f.Close()
		lines = lines[:0]
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("not JSON: %q", sc.Text())
			}
			lines = append(lines, m)
		}
		return len(lines) == 2
	})
	first, second := lines[0], lines[1]
	if first["method"] != "GET" || first["path"] != "/hello" || first["status"] != float64(200) ||
		first["upstream_cluster"] != "up" || first["request_id"] != "rid-42" {
		t.Fatalf("first line: %v", first)
	}
	if _, ok := first["user_agent"]; ok {
		t.Fatalf("a field not asked for was written: %v", first)
	}
	if _, ok := first["duration_ms"].(float64); !ok {
		t.Fatalf("duration_ms missing: %v", first)
	}
	if second["status"] != float64(503) {
		t.Fatalf("second line: %v", second)
	}
}

// TestRejectedConfigsDoNotLeakAccessLogFiles: a config refused after its
// access log file was opened closes it again.
func TestRejectedConfigsDoNotLeakAccessLogFiles(t *testing.T) {
	up := testserver.Start(t, "up")
	p, err := New(context.Background(), Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	path := filepath.Join(t.TempDir(), "access.log")
	// The second listener's TLS files do not exist, so compiling it fails
	// after the first listener's access log is open.
	bad := expand(`
listeners:
  - name: a
    address: 127.0.0.1:0
    access_log: {enabled: true, path: `+path+`}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
  - name: b
    address: 127.0.0.1:0
    access_log: {enabled: true, path: `+path+`}
    tls: {mode: strict, cert_file: /nonexistent/cert.pem, key_file: /nonexistent/key.pem, ca_file: /nonexistent/ca.pem}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`, map[string]string{"up": up.Addr})
	cfg, err := config.Parse("bad.yaml", []byte(bad))
	if err != nil {
		t.Skipf("the failing config does not parse here (%v); nothing to measure", err)
	}
	fds := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	if err := p.Apply(context.Background(), cfg, []byte(bad), ""); err == nil {
		t.Fatal("config with missing TLS files applied")
	}
	before := fds()
	for i := 0; i < 20; i++ {
		_ = p.Apply(context.Background(), cfg, []byte(bad), "")
	}
	if after := fds(); after > before+2 {
		t.Fatalf("20 refused configs left %d more open files", after-before)
	}
}
