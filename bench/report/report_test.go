package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/bench/loadgen"
)

func sample() *Report {
	r := &Report{
		Title:   "test run",
		Started: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
		Host:    Host{OS: "linux", Arch: "amd64", CPUs: 2, GoVersion: "go1.26"},
		Settings: Settings{Mode: loadgen.Closed, Connections: 64, Warmup: 2, Duration: 10,
			MaxRequests: 1000000, BodySize: 64, Pinned: true, LoadCPUs: "0", ServerCPUs: "1"},
		Scenarios: []Scenario{
			{Name: "direct", Status: StatusOK, Requests: 400000, RPS: 40000, Elapsed: 10,
				Statuses: loadgen.StatusCounts{C2xx: 400000},
				Latency:  loadgen.Summary{Count: 400000, P50: 900, P90: 1500, P99: 3000, P999: 9000, Max: 21000}},
			{Name: "weft", Status: StatusOK, Requests: 200000, RPS: 20000, Elapsed: 10,
				Statuses: loadgen.StatusCounts{C2xx: 199990, C5xx: 10},
				Errors:   loadgen.ErrorCounts{Timeout: 2},
				Latency:  loadgen.Summary{Count: 200000, P50: 2100, P90: 3500, P99: 6000, P999: 15000, Max: 80000},
				CPU:      NewCPU([]string{"weft"}, 9*time.Second, 41<<20, 200000)},
			{Name: `odd <&"> name`, Status: StatusOK, Requests: 100, RPS: 10, Elapsed: 10,
				Latency: loadgen.Summary{Count: 100, P50: 50, P90: 60, P99: 70, P999: 80, Max: 90}},
			{Name: "weft-mtls", Status: StatusOK, Requests: 100000, RPS: 10000, Elapsed: 10, Compare: "weft",
				Statuses: loadgen.StatusCounts{C2xx: 100000},
				Latency:  loadgen.Summary{Count: 100000, P50: 4000, P90: 6000, P99: 12000, P999: 20000, Max: 90000},
				CPU:      twoSidecars()},
			{Name: "weft-auth", Status: StatusOK, Requests: 10, RPS: 1, Elapsed: 10, Compare: "haproxy",
				Statuses: loadgen.StatusCounts{C2xx: 10},
				Latency:  loadgen.Summary{Count: 10, P50: 1, P90: 1, P99: 1, P999: 1, Max: 1}},
			{Name: "haproxy", Status: StatusSkipped, Reason: "haproxy is not installed"},
			{Name: "broken", Status: StatusFailed, Reason: "weft exited | early"},
		},
		Notes: []string{"a note"},
	}
	r.ComputeRatios("direct")
	r.ComputeComparisons()
	return r
}

// twoSidecars is 10 s + 8 s of CPU over 100k requests.
func twoSidecars() *CPU {
	c := NewCPU([]string{"sidecar-a", "sidecar-b"}, 18*time.Second, 80<<20, 100000)
	c.AddProcess("sidecar-a", 10*time.Second, 40<<20, 100000)
	c.AddProcess("sidecar-b", 8*time.Second, 40<<20, 100000)
	return c
}

func TestRatiosAndCPU(t *testing.T) {
	r := sample()
	w := r.Scenarios[1]
	if r.Baseline != "direct" || w.RPSRatio != 0.5 || w.P99Ratio != 2 {
		t.Fatalf("baseline %q, weft ratios rps %v p99 %v; want 0.5 and 2", r.Baseline, w.RPSRatio, w.P99Ratio)
	}
	if w.CPU.MicrosPerRequest != 45 || w.CPU.SecondsPer10k != 0.45 {
		t.Fatalf("cpu %+v: 9 s over 200k requests is 45 µs/req, 0.45 s/10k", w.CPU)
	}
	if r.Scenarios[5].RPSRatio != 0 {
		t.Fatal("a skipped scenario got a ratio")
	}
	m := r.Scenarios[3]
	if m.CompareRPSRatio != 0.5 || m.CompareP99Ratio != 2 || m.CompareCPURatio != 4 {
		t.Fatalf("weft-mtls against weft: rps %v p99 %v cpu %v; want 0.5, 2, 4 (180 µs/req over 45)", m.CompareRPSRatio, m.CompareP99Ratio, m.CompareCPURatio)
	}
	if a := r.Scenarios[4]; a.CompareRPSRatio != 0 || a.CompareP99Ratio != 0 {
		t.Fatalf("compared with a skipped scenario: %+v", a)
	}
	if e := m.CPU.Each; len(e) != 2 || e[0].MicrosPerRequest != 100 || e[1].MicrosPerRequest != 80 {
		t.Fatalf("per-process CPU %+v", e)
	}
	w.Errors, w.Statuses = loadgen.ErrorCounts{Reset: 10}, loadgen.StatusCounts{C2xx: 80, C5xx: 10}
	w.Requests = 90
	if w.Failed() != 20 || w.ErrorRate() != 0.2 {
		t.Fatalf("failed %d, rate %v; want 20 of 100 requests", w.Failed(), w.ErrorRate())
	}
	if (&Scenario{}).ErrorRate() != 0 {
		t.Fatal("error rate of nothing")
	}
	noBase := &Report{Scenarios: []Scenario{{Name: "weft", Status: StatusOK, RPS: 1}}}
	noBase.ComputeRatios("direct")
	if noBase.Baseline != "" || noBase.Scenarios[0].RPSRatio != 0 {
		t.Fatal("ratios without a baseline")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := sample()
	var buf bytes.Buffer
	if err := r.JSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, r) {
		t.Fatalf("round trip differs:\n%+v\n%+v", back, *r)
	}
	// Field names a script would read.
	var raw map[string]any
	_ = json.Unmarshal(buf.Bytes(), &raw)
	sc := raw["scenarios"].([]any)[1].(map[string]any)
	if sc["latency"].(map[string]any)["p99_us"].(float64) != 6000 || sc["cpu"].(map[string]any)["us_per_request"].(float64) != 45 {
		t.Fatalf("unexpected JSON shape: %v", sc)
	}
}

func TestMarkdown(t *testing.T) {
	var buf bytes.Buffer
	if err := sample().Markdown(&buf); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{
		"| scenario | rps | p50 | p90 | p99 | p99.9 | max | CPU µs/req | CPU s/10k | peak RSS | rps × direct | p99 × direct | errors |",
		"| direct | 40000 | 0.900 | 1.50 | 3.00 | 9.00 | 21.0 | – | – | – | 1.00 | 1.00 | 0 |",
		"| weft | 20000 | 2.10 | 3.50 | 6.00 | 15.0 | 80.0 | 45.0 | 0.450 | 41.0 MiB | 0.50 | 2.00 | 12 (0.01%) |",
		"| scenario | compared with | rps × | p99 × | CPU µs/req × | errors | errors there |",
		"| weft-mtls | weft | 0.50 | 2.00 | 4.00 | 0 | 12 (0.01%) |",
		"- weft-mtls: sidecar-a 100.0 µs/req (40.0 MiB) + sidecar-b 80.0 µs/req (40.0 MiB)",
		"- haproxy: skipped — haproxy is not installed",
		`- broken: failed — weft exited \| early`,
		"pinned: load generator on CPU 0, proxy and upstream on CPU 1",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| weft-auth | haproxy |") {
		t.Error("a comparison with a scenario that did not run")
	}
	// Every row of the main table has the header's column count.
	main, _, _ := strings.Cut(md, "### Against")
	for _, l := range strings.Split(main, "\n") {
		if strings.HasPrefix(l, "| ") && strings.Count(strings.ReplaceAll(l, `\|`, ""), "|") != 14 {
			t.Errorf("row with a wrong column count: %s", l)
		}
	}
}

// svgTexts checks that doc is well-formed XML with an <svg> root and
// returns the character data of its <text> and <title> elements.
func svgTexts(t *testing.T, doc []byte) []string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(doc))
	var texts []string
	var stack []string
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = e.Name.Local
			}
			stack = append(stack, e.Name.Local)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if n := len(stack); n > 0 && (stack[n-1] == "text" || stack[n-1] == "title") {
				texts = append(texts, string(e))
			}
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return texts
}

func TestSVGCharts(t *testing.T) {
	r := sample()
	charts := map[string]func(io.Writer) error{"latency": r.LatencySVG, "throughput": r.ThroughputSVG, "cpu": r.CPUSVG}
	for name, draw := range charts {
		var buf bytes.Buffer
		if err := draw(&buf); err != nil {
			t.Fatal(err)
		}
		texts := strings.Join(svgTexts(t, buf.Bytes()), "\n")
		want := []string{"direct", "weft", `odd <&"> name`}
		if name == "cpu" {
			want = []string{"weft", "45.0"}
		}
		for _, w := range want {
			if !strings.Contains(texts, w) {
				t.Errorf("%s chart lacks %q", name, w)
			}
		}
		if strings.Contains(texts, "haproxy") || strings.Contains(texts, "broken") {
			t.Errorf("%s chart shows a scenario that did not run", name)
		}
	}
	var buf bytes.Buffer
	if err := r.LatencySVG(&buf); err != nil {
		t.Fatal(err)
	}
	texts := strings.Join(svgTexts(t, buf.Bytes()), "\n")
	for _, w := range []string{"p50", "p99.9", "max", "weft p99: 6.00 ms", "0.01", "100"} {
		if !strings.Contains(texts, w) {
			t.Errorf("latency chart lacks %q", w)
		}
	}
	// One line per measured scenario.
	if n, want := bytes.Count(buf.Bytes(), []byte("<polyline")), len(r.Measured()); n != want {
		t.Errorf("%d lines, want %d", n, want)
	}
}

func TestEmptyReportRenders(t *testing.T) {
	r := &Report{Scenarios: []Scenario{{Name: "nginx", Status: StatusSkipped, Reason: "absent"}}}
	dir := t.TempDir()
	paths, err := r.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 5 {
		t.Fatalf("wrote %v", paths)
	}
	for _, p := range paths {
		if strings.HasSuffix(p, ".svg") {
			b, _ := os.ReadFile(p)
			svgTexts(t, b)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, FileJSON)); err != nil {
		t.Fatal(err)
	}
}

func TestNiceScale(t *testing.T) {
	for _, tt := range []struct{ max, top, step float64 }{
		{0, 1, 0.2}, {7, 8, 2}, {43210, 50000, 10000}, {100, 100, 20}, {0.33, 0.4, 0.1},
	} {
		top, step := niceScale(tt.max)
		if top < tt.max || !approxEqual(top, tt.top) || !approxEqual(step, tt.step) {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tt.max, top, step, tt.top, tt.step)
		}
	}
}

func approxEqual(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestMarkdownOpenLoop(t *testing.T) {
	r := sample()
	r.Settings.Mode, r.Settings.Rate = loadgen.Open, 15000
	r.Scenarios[1].ServiceTime = &loadgen.Summary{P50: 200, P90: 400, P99: 1200, P999: 5000, Max: 9000}
	r.Scenarios[1].Dropped = 7
	var buf bytes.Buffer
	if err := r.Markdown(&buf); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{
		"open loop, 15000 req/s over 64 workers (latency from intended send time)",
		"### Service time",
		"| weft | 0.200 | 0.400 | 1.20 | 5.00 | 9.00 | 7 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	buf.Reset()
	if err := r.ThroughputSVG(&buf); err != nil {
		t.Fatal(err)
	}
	if texts := strings.Join(svgTexts(t, buf.Bytes()), "\n"); !strings.Contains(texts, "open loop at 15000 req/s") {
		t.Errorf("chart subtitle lacks the settings:\n%s", texts)
	}
}

// gRPC calls and stream messages are not HTTP requests: no ratio against
// an HTTP/1.1 baseline, but against one of the same protocol; h2c
// compares with HTTP/1.1. The markdown names the protocols.
func TestRatiosOnlyBetweenTheSameUnits(t *testing.T) {
	r := &Report{Scenarios: []Scenario{
		{Name: "direct", Status: StatusOK, RPS: 100, Protocol: "http1", Latency: loadgen.Summary{P99: 10}},
		{Name: "weft-h2c", Status: StatusOK, RPS: 50, Protocol: "h2c", Latency: loadgen.Summary{P99: 20}},
		{Name: "grpc-weft", Status: StatusOK, RPS: 25, Protocol: "grpc-unary", Latency: loadgen.Summary{P99: 40}},
	}}
	r.ComputeRatios("direct")
	if r.Scenarios[1].RPSRatio != 0.5 || r.Scenarios[2].RPSRatio != 0 || r.Scenarios[2].P99Ratio != 0 {
		t.Fatalf("ratios %+v", r.Scenarios)
	}
	r.ComputeRatios("grpc-weft")
	if r.Scenarios[2].RPSRatio != 1 {
		t.Fatalf("ratios against grpc-weft %+v", r.Scenarios)
	}
	var b strings.Builder
	if err := r.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Not HTTP/1.1: weft-h2c h2c, grpc-weft grpc-unary.") {
		t.Fatalf("markdown:\n%s", b.String())
	}
}

// A fault scenario gets a row in the Faults table: when the fault
// happened, what failed, and the time to recover.
func TestMarkdownFaults(t *testing.T) {
	r := &Report{Settings: Settings{Mode: loadgen.Closed, Connections: 16, Duration: 10}, Scenarios: []Scenario{
		{Name: "clean", Status: StatusOK, Requests: 1000, RPS: 100, Elapsed: 10,
			Statuses: loadgen.StatusCounts{C2xx: 1000},
			Fault:    &Fault{Description: "kill -9 one", At: 3}},
		{Name: "lossy", Status: StatusOK, Requests: 1000, RPS: 100, Elapsed: 10,
			Statuses: loadgen.StatusCounts{C2xx: 900, C5xx: 100},
			Fault:    &Fault{Description: "kill -9 one", At: 3, Recovery: 0.25, FailedAfter: true}},
	}}
	var b bytes.Buffer
	if err := r.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"### Faults",
		"| clean | kill -9 one | 3.00 s | 0 | nothing failed after it |",
		"| lossy | kill -9 one | 3.00 s | 100 (10.00%) | 250 ms |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
}

func TestEndpointCPU(t *testing.T) {
	lat := loadgen.Summary{P50: 1000, P99: 2000}
	r := &Report{Scenarios: []Scenario{
		{Name: "grpc-direct", Status: StatusOK, Protocol: "grpc-unary", Requests: 100000, RPS: 10000, Latency: lat,
			Client:   NewProcessCPU("load", 3*time.Second, 1, 100000),           // 30 µs/call
			Upstream: NewProcessCPU("grpc-upstream", 2*time.Second, 1, 100000)}, // 20 µs/call
		{Name: "grpc-weft", Status: StatusOK, Protocol: "grpc-unary", Compare: "grpc-direct", Requests: 50000, RPS: 5000, Latency: lat,
			CPU:      NewCPU([]string{"weft"}, 4*time.Second, 1, 50000),                // 80 µs/call
			Client:   NewProcessCPU("load", 1500*time.Millisecond, 1, 50000),           // 30 µs/call
			Upstream: NewProcessCPU("grpc-upstream", 1250*time.Millisecond, 1, 50000)}, // 25 µs/call
		{Name: "weft-noends", Status: StatusOK, Protocol: "grpc-unary", Compare: "grpc-direct", Requests: 1, RPS: 1, Latency: lat,
			CPU: NewCPU([]string{"weft"}, time.Second, 1, 1)},
	}}
	r.ComputeComparisons()
	e := r.Scenarios[1].Endpoints
	if e == nil {
		t.Fatal("no endpoint comparison for grpc-weft")
	}
	want := EndpointCPU{Direct: 50, Proxied: 55, Proxy: 80, Added: 85, ProxyRatio: 1.6, AddedRatio: 1.7}
	if math.Abs(e.Direct-want.Direct) > 1e-9 || math.Abs(e.Proxied-want.Proxied) > 1e-9 || math.Abs(e.Proxy-want.Proxy) > 1e-9 ||
		math.Abs(e.Added-want.Added) > 1e-9 || math.Abs(e.ProxyRatio-want.ProxyRatio) > 1e-9 || math.Abs(e.AddedRatio-want.AddedRatio) > 1e-9 {
		t.Fatalf("endpoint CPU %+v, want %+v", *e, want)
	}
	if r.Scenarios[2].Endpoints != nil {
		t.Fatal("a scenario whose endpoints were not observed got an endpoint comparison")
	}
	var b strings.Builder
	if err := r.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"### Client and upstream CPU", "| grpc-weft | 30.0 | 25.0 | 80.0 | 50.0 | 1.60 | 85.0 | 1.70 |", "| grpc-direct | 30.0 | 20.0 | – | – | – | – | – |"} {
		if !strings.Contains(b.String(), s) {
			t.Fatalf("markdown lacks %q:\n%s", s, b.String())
		}
	}
}
