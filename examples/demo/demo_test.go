package demo

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// runDemo runs the demo on free ports until its tour has printed and
// returns what it printed.
func runDemo(t *testing.T, o Options) string {
	t.Helper()
	out := &syncWriter{}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out.ready = cancel
	o.Port, o.Out = 0, out
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if !bytes.Contains([]byte(text), []byte("Stop with Ctrl-C")) {
		t.Fatalf("the demo stopped before its tour ended:\n%s", text)
	}
	return text
}

func checkRouting(t *testing.T, text string) {
	t.Helper()
	m := regexp.MustCompile(`v1=(\d+) v2=(\d+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no split line in:\n%s", text)
	}
	v1, _ := strconv.Atoi(m[1])
	v2, _ := strconv.Atoi(m[2])
	if v1+v2 != 200 || v2 < 3 || v2 > 45 {
		t.Fatalf("split v1=%d v2=%d, want 200 requests about 90/10", v1, v2)
	}
	if !regexp.MustCompile(`x-canary: always, 20 requests: v2=20`).MatchString(text) {
		t.Fatalf("A/B line wrong:\n%s", text)
	}
	if !regexp.MustCompile(`100 requests to /ratings: 100 succeeded`).MatchString(text) {
		t.Fatalf("retries did not hide the failures:\n%s", text)
	}
}

// TestDemoRunsThePlugins runs the demo as `weft demo` does: it builds the
// first-party plugins from plugins/ (cached by source digest) and its tour
// shows each one working: the routing plugin's split, the auth plugin's
// 401s and accepted token, the fault plugin's abort, and the telemetry
// plugin's counters as /stats/prometheus exports them.
func TestDemoRunsThePlugins(t *testing.T) {
	cache := filepath.Join(os.TempDir(), "weft-demo-test-cache")
	text := runDemo(t, Options{CacheDir: cache})
	t.Logf("demo output:\n%s", text)
	if !regexp.MustCompile(`plugins: auth, fault, routing, telemetry (built from plugins/|from the cache)`).MatchString(text) {
		t.Fatalf("plugins not loaded:\n%s", text)
	}
	checkRouting(t, text)
	if !regexp.MustCompile(`chosen by the routing plugin`).MatchString(text) {
		t.Errorf("split not credited to the routing plugin:\n%s", text)
	}
	for _, want := range []string{
		`without a token: 401 \(www-authenticate: Bearer realm="demo"\); forged signature: 401; accounts service saw 0 of them`,
		`with the demo's HS256 token: 200, the service saw x-user=demo-user`,
		`x-chaos: on: 3 of 3 answered 503 by the plugin \(x-weft-fault: abort\) after its 150ms delay .*; ratings saw 0 of them`,
	} {
		if !regexp.MustCompile(want).MatchString(text) {
			t.Errorf("tour lacks %q:\n%s", want, text)
		}
	}
	// The telemetry counters, as printed from /stats/prometheus.
	got := map[string]int{}
	re := regexp.MustCompile(`name="demo_requests_total\{route=([^,]+),code=(\d+)\}",plugin="telemetry"\} (\d+)`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[3])
		got[m[1]+" "+m[2]] += n
	}
	if n := got["reviews 200"] + got["reviews-v2 200"]; n != 220 {
		t.Errorf("telemetry counted %d answered /reviews requests, want 220 (200 split + 20 A/B): %v", n, got)
	}
	for k, want := range map[string]int{"account 401": 2, "account 200": 1, "ratings 200": 100, "ratings 503": 3} {
		if got[k] != want {
			t.Errorf("telemetry counter %s = %d, want %d (all: %v)", k, got[k], want, got)
		}
	}
}

// TestDemoWithoutPlugins checks the fallback: the route table does the
// split and the tour says the plugins are off.
func TestDemoWithoutPlugins(t *testing.T) {
	text := runDemo(t, Options{NoPlugins: true})
	if !regexp.MustCompile(`plugins: off`).MatchString(text) {
		t.Fatalf("no plugin note:\n%s", text)
	}
	checkRouting(t, text)
	if !regexp.MustCompile(`chosen by the route table`).MatchString(text) {
		t.Errorf("split not credited to the route table:\n%s", text)
	}
	if regexp.MustCompile(`auth plugin|fault plugin|telemetry plugin`).MatchString(text) {
		t.Errorf("plugin lines without plugins:\n%s", text)
	}
}

// syncWriter collects output and ends the demo once the tour has printed.
type syncWriter struct {
	mu    sync.Mutex
	b     bytes.Buffer
	ready context.CancelFunc
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.b.Write(p)
	if bytes.Contains(p, []byte("Stop with Ctrl-C")) {
		w.ready()
	}
	return n, err
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestPluginsAreCachedBySource checks the second start builds nothing: the
// same sources give the same cached modules, each a Wasm module.
func TestPluginsAreCachedBySource(t *testing.T) {
	cache := filepath.Join(os.TempDir(), "weft-demo-test-cache")
	first, err := buildPlugins(context.Background(), cache, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	second, err := buildPlugins(context.Background(), cache, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if !second.cached || progress.Len() != 0 {
		t.Fatalf("second build not from the cache (cached=%v, progress %q)", second.cached, progress.String())
	}
	for _, n := range pluginNames {
		if first.paths[n] != second.paths[n] {
			t.Errorf("plugin %s: %s then %s", n, first.paths[n], second.paths[n])
		}
		b, err := os.ReadFile(second.paths[n])
		if err != nil || len(b) < 8 || string(b[:4]) != "\x00asm" {
			t.Errorf("plugin %s: %s is not a Wasm module (%v)", n, second.paths[n], err)
		}
	}
}
