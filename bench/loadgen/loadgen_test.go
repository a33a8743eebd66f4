package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/bench/upstream"
)

func startUpstream(t *testing.T, cfg upstream.Config) *upstream.Server {
	t.Helper()
	s, err := upstream.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// countAtLeast counts recorded values >= min.
func countAtLeast(h *hdrhistogram.Histogram, min int64) int64 {
	var n int64
	for _, b := range h.Distribution() {
		if b.From >= min {
			n += b.Count
		}
	}
	return n
}

func TestClosedLoopMeasuresKnownLatency(t *testing.T) {
	up := startUpstream(t, upstream.Config{Delay: 20 * time.Millisecond})
	res, err := Run(context.Background(), Config{
		Name: "delay20", URL: up.URL(), Connections: 4,
		Warmup: 200 * time.Millisecond, Duration: 1500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := Summarize(res.Latency)
	t.Logf("requests=%d rps=%.0f p50=%dµs p99=%dµs max=%dµs", res.Requests, res.RPS(), s.P50, s.P99, s.Max)
	if res.Errors.Total() != 0 || res.Status.Non2xx() != 0 {
		t.Fatalf("errors %+v, statuses %+v", res.Errors, res.Status)
	}
	if res.Requests == 0 || res.WarmupRequests == 0 {
		t.Fatalf("requests=%d warm-up=%d, want both > 0", res.Requests, res.WarmupRequests)
	}
	// Warm-up requests are not in the histogram.
	if res.Latency.TotalCount() != res.Requests || res.Status.C2xx != res.Requests {
		t.Fatalf("histogram holds %d, 2xx %d, requests %d", res.Latency.TotalCount(), res.Status.C2xx, res.Requests)
	}
	if s.P50 < 19_000 || s.P50 > 60_000 {
		t.Fatalf("p50 = %d µs, want about 20 ms (19..60 ms)", s.P50)
	}
	if s.Min < 19_000 {
		t.Fatalf("min = %d µs: a 20 ms upstream cannot answer faster", s.Min)
	}
	// Four connections at ~20 ms each: about 200 rps; generous bounds.
	if rps := res.RPS(); rps < 10 || rps > 210 {
		t.Fatalf("rps = %.0f, want about 4/20ms = 200, never more (10..210)", rps)
	}
}

func TestOpenLoopCorrectsCoordinatedOmission(t *testing.T) {
	const stall = 500 * time.Millisecond
	up := startUpstream(t, upstream.Config{StallAfter: time.Second, StallFor: stall})
	res, err := Run(context.Background(), Config{
		Name: "stall", URL: up.URL(), Connections: 4, Rate: 400,
		Duration: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != Open || res.Errors.Total() != 0 || res.Status.Non2xx() != 0 {
		t.Fatalf("mode %s, errors %+v, statuses %+v", res.Mode, res.Errors, res.Status)
	}
	lat, svc := Summarize(res.Latency), Summarize(res.ServiceTime)
	slow, naiveSlow := countAtLeast(res.Latency, 100_000), countAtLeast(res.ServiceTime, 100_000)
	t.Logf("requests=%d corrected: p90=%dµs p99=%dµs max=%dµs (%d ≥ 100ms); naive: p90=%dµs p99=%dµs max=%dµs (%d ≥ 100ms)",
		res.Requests, lat.P90, lat.P99, lat.Max, slow, svc.P90, svc.P99, svc.Max, naiveSlow)
	if res.Requests < 800 {
		t.Fatalf("requests = %d, want about 1200 (400/s for 3 s)", res.Requests)
	}
	// Corrected: every request meant to go out during the stall waited for it.
	if lat.Max < 450_000 {
		t.Fatalf("corrected max = %d µs, want ≥ 450 ms: the stall is missing", lat.Max)
	}
	if lat.P99 < 300_000 {
		t.Fatalf("corrected p99 = %d µs, want ≥ 300 ms: the stall holds ~13%% of requests", lat.P99)
	}
	if frac := float64(slow) / float64(res.Requests); frac < 0.05 {
		t.Fatalf("%.1f%% of requests ≥ 100 ms, want ≥ 5%% (those scheduled during the 500 ms stall)", 100*frac)
	}
	// Naive per-request timing sees only the few requests that were on the
	// wire when the stall began (one per worker).
	if naiveSlow > 4*int64(res.Connections) || naiveSlow*5 > slow {
		t.Fatalf("naive timing has %d slow requests vs %d corrected: it should see only about one per worker", naiveSlow, slow)
	}
	if svc.Max < 300_000 {
		t.Fatalf("naive max = %d µs: the requests caught in the stall should show it", svc.Max)
	}
}

func TestMaxRequestsBoundsTheRun(t *testing.T) {
	up := startUpstream(t, upstream.Config{})
	for _, rate := range []float64{0, 2000} {
		res, err := Run(context.Background(), Config{
			URL: up.URL(), Connections: 3, Rate: rate, Duration: time.Minute, MaxRequests: 50,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests != 50 || res.Errors.Total() != 0 {
			t.Fatalf("rate %v: requests = %d errors %+v, want exactly 50 and none", rate, res.Requests, res.Errors)
		}
	}
}

func TestContextStopsTheRun(t *testing.T) {
	up := startUpstream(t, upstream.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	res, err := Run(ctx, Config{URL: up.URL(), Connections: 2, Duration: time.Hour, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Requests > 100 {
		t.Fatalf("requests = %d, want some, and far fewer than an hour's", res.Requests)
	}
}

func TestStatusClassesAndErrors(t *testing.T) {
	up := startUpstream(t, upstream.Config{FailRate: 0.25})
	res, err := Run(context.Background(), Config{URL: up.URL(), Connections: 2, Duration: time.Minute, MaxRequests: 200})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status.C5xx != 50 || res.Status.C2xx != 150 {
		t.Fatalf("statuses %+v, want 50 5xx and 150 2xx", res.Status)
	}

	// A port nobody listens on: every request is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res, err = Run(context.Background(), Config{URL: "http://" + addr + "/", Connections: 2, Duration: time.Minute, MaxRequests: 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Errors.Refused != 20 {
		t.Fatalf("requests %d errors %+v, want 0 answered and 20 refused", res.Requests, res.Errors)
	}
}

func TestProgressLines(t *testing.T) {
	up := startUpstream(t, upstream.Config{})
	var buf bytes.Buffer
	_, err := Run(context.Background(), Config{
		Name: "prog", URL: up.URL(), Connections: 2, Rate: 200, Warmup: 200 * time.Millisecond,
		Duration: 500 * time.Millisecond, Progress: &buf, ProgressInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Count(out, "bench prog:") < 3 || !strings.Contains(out, "warm-up") || !strings.Contains(out, "measure") {
		t.Fatalf("progress output:\n%s", out)
	}
}

func TestMeasureHooksAndResultJSON(t *testing.T) {
	up := startUpstream(t, upstream.Config{})
	var order []string
	res, err := Run(context.Background(), Config{
		URL: up.URL(), Connections: 2, Warmup: 100 * time.Millisecond, Duration: 200 * time.Millisecond,
		OnMeasureStart: func() { order = append(order, "start") },
		OnMeasureEnd:   func() { order = append(order, "end") },
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, ",") != "start,end" {
		t.Fatalf("hooks ran %v, want start then end", order)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Requests != res.Requests || back.Elapsed != res.Elapsed || back.Status != res.Status ||
		!back.Latency.Equals(res.Latency) || Summarize(back.Latency) != Summarize(res.Latency) {
		t.Fatalf("round trip changed the result:\n%+v\n%+v", back, res)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "http://127.0.0.1:1/"},
		{URL: "ftp://x/", Duration: time.Second},
		{URL: "127.0.0.1:80", Duration: time.Second},
		{URL: "http://127.0.0.1:1/", Duration: time.Second, Rate: -1},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("%+v: want an error", cfg)
		}
	}
}

// The per-request path (send, classify, record) allocates nothing once the
// connection is up.
func TestRequestPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	up := startUpstream(t, upstream.Config{})
	g, err := newGenerator(Config{URL: up.URL(), Connections: 1, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer g.hc.CloseIdleConnections()
	w := g.workers[0]
	allocs := testing.AllocsPerRun(200, func() {
		now := time.Now()
		err := g.hc.DoTimeout(w.req, w.resp, g.timeout)
		w.record(true, err, now, now, time.Now())
	})
	if allocs != 0 || w.errs.Total() != 0 {
		t.Fatalf("%.1f allocs per request (errors %+v), want 0", allocs, w.errs)
	}
}

func BenchmarkClosedLoopRequest(b *testing.B) {
	up, err := upstream.Start(upstream.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer up.Close()
	g, err := newGenerator(Config{URL: up.URL(), Connections: 1, Duration: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer g.hc.CloseIdleConnections()
	w := g.workers[0]
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		err := g.hc.DoTimeout(w.req, w.resp, g.timeout)
		w.record(true, err, now, now, time.Now())
	}
}

func BenchmarkRecord(b *testing.B) {
	g, err := newGenerator(Config{URL: "http://127.0.0.1:1/", Connections: 1, Duration: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	w := g.workers[0]
	w.resp.SetStatusCode(200)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		w.record(true, nil, now, now, now.Add(123*time.Microsecond))
	}
}

// An open loop the target cannot keep up with stops one timeout after the
// window and counts what it never sent.
func TestOpenLoopCountsDropped(t *testing.T) {
	up := startUpstream(t, upstream.Config{Delay: 50 * time.Millisecond})
	res, err := Run(context.Background(), Config{
		URL: up.URL(), Connections: 1, Rate: 1000, Duration: time.Second, Timeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := res.Requests + res.Errors.Total()
	if res.Dropped < 500 || sent+res.Dropped != 1000 {
		t.Fatalf("requests %d errors %+v dropped %d: want most of the 1000 due dropped, and all accounted for",
			res.Requests, res.Errors, res.Dropped)
	}
	// Every answered request waited for the backlog: latency far above the
	// 50 ms service time.
	if lat := Summarize(res.Latency); lat.Max < 500_000 {
		t.Fatalf("corrected max %d µs, want the growing backlog (≥ 500 ms)", lat.Max)
	}
}

// Every request carries the configured headers; a malformed one is refused.
func TestHeadersAreSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var with, without atomic.Int64
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Request.Header.Peek("Authorization")) == "Bearer t0ken" && string(ctx.Request.Header.Peek("X-Two")) == "2" {
			with.Add(1)
			return
		}
		without.Add(1)
		ctx.SetStatusCode(fasthttp.StatusUnauthorized)
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { _ = srv.Shutdown(); <-done }()

	auth, err := ParseHeader("Authorization: Bearer t0ken")
	if err != nil || auth.Name != "Authorization" || auth.Value != "Bearer t0ken" {
		t.Fatalf("ParseHeader: %+v, %v", auth, err)
	}
	res, err := Run(context.Background(), Config{
		Name: "headers", URL: "http://" + ln.Addr().String() + "/", Connections: 2,
		Duration: 300 * time.Millisecond, Headers: []Header{auth, {Name: "X-Two", Value: "2"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Status.C2xx != res.Requests || without.Load() != 0 || with.Load() < res.Requests {
		t.Fatalf("requests %d, statuses %+v; server saw %d with the headers, %d without", res.Requests, res.Status, with.Load(), without.Load())
	}

	for _, bad := range []string{"no colon", ": empty name", "Bad Name: v", "X: a\r\nY: b"} {
		if _, err := ParseHeader(bad); err == nil {
			t.Errorf("ParseHeader(%q) accepted it", bad)
		}
	}
	if _, err := Run(context.Background(), Config{URL: "http://127.0.0.1:1/", Duration: time.Millisecond, Headers: []Header{{Name: "", Value: "x"}}}); err == nil {
		t.Error("Run accepted a header with no name")
	}
}
