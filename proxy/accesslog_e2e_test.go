package proxy

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

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
