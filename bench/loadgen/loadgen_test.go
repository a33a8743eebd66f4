package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/bench/upstream"
	"github.com/weftmesh/weft/proxy/loopback"
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

// Tests here never time the generator against a threshold it might miss
// on a busy machine: exact values come from record with given times, and
// runs against a real upstream assert only counts and lower bounds that
// causality guarantees (an upstream that holds a response for d cannot be
// measured faster than d).

func TestClosedLoopMeasuresKnownLatency(t *testing.T) {
	up := startUpstream(t, upstream.Config{Delay: 20 * time.Millisecond})
	res, err := Run(context.Background(), Config{
		// The measured part ends at a count, not a clock: a run on a
		// stalled machine still measures all 40 (the warm-up's half second
		// is the only time the test depends on: at least one request must
		// start in it).
		Name: "delay20", URL: up.URL(), Connections: 4,
		Warmup: 500 * time.Millisecond, Duration: time.Minute, MaxRequests: 40,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := Summarize(res.Latency)
	t.Logf("requests=%d rps=%.0f p50=%dµs p99=%dµs max=%dµs", res.Requests, res.RPS(), s.P50, s.P99, s.Max)
	if res.Errors.Total() != 0 || res.Status.Non2xx() != 0 {
		t.Fatalf("errors %+v, statuses %+v", res.Errors, res.Status)
	}
	if res.Requests != 40 || res.WarmupRequests == 0 {
		t.Fatalf("requests=%d warm-up=%d, want 40 and > 0", res.Requests, res.WarmupRequests)
	}
	// Warm-up requests are not in the histogram.
	if res.Latency.TotalCount() != res.Requests || res.Status.C2xx != res.Requests {
		t.Fatalf("histogram holds %d, 2xx %d, requests %d", res.Latency.TotalCount(), res.Status.C2xx, res.Requests)
	}
	// Closed loop: one histogram, sent = intended.
	if !res.ServiceTime.Equals(res.Latency) {
		t.Fatal("closed loop: service time differs from latency")
	}
	if s.Min < 20_000 {
		t.Fatalf("min = %d µs: a 20 ms upstream cannot answer faster, so the timer does not wrap the request", s.Min)
	}
}

// TestRecordSeparatesLatencyFromServiceTime: in the open loop latency runs
// from the intended send time (so a stalled target counts against every
// request that was due, not only the ones on the wire) and service time from
// the actual send; warm-up and failed requests stay out of both.
func TestRecordSeparatesLatencyFromServiceTime(t *testing.T) {
	g, err := newGenerator(Config{URL: "http://127.0.0.1:1/", Connections: 1, Rate: 100, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w := g.workers[0]
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	// Due at t0, sent 400 ms late (the target was stalled), answered 50 ms later.
	w.record(true, 200, nil, t0, t0.Add(400*ms), t0.Add(450*ms))
	// On time, 2 ms.
	w.record(true, 200, nil, t0.Add(10*ms), t0.Add(10*ms), t0.Add(12*ms))
	// Warm-up and a refused request: counted, not measured.
	w.record(false, 200, nil, t0, t0, t0.Add(time.Second))
	w.record(true, 0, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, t0, t0, t0.Add(time.Second))
	w.record(true, 503, nil, t0, t0, t0.Add(ms))

	if w.measured != 3 || w.warm != 1 || w.errs.Refused != 1 || w.status.C2xx != 2 || w.status.C5xx != 1 || w.done.Load() != 5 {
		t.Fatalf("measured %d warm %d errors %+v statuses %+v done %d", w.measured, w.warm, w.errs, w.status, w.done.Load())
	}
	if got := []int64{w.latency.Max(), w.latency.Min(), w.latency.TotalCount()}; !lowestEquivalent(w.latency, got[0], 450_000) || !lowestEquivalent(w.latency, got[1], 1_000) || got[2] != 3 {
		t.Fatalf("latency max %d min %d count %d, want 450000 µs, 1000 µs, 3", got[0], got[1], got[2])
	}
	if !lowestEquivalent(w.service, w.service.Max(), 50_000) || w.service.TotalCount() != 3 {
		t.Fatalf("service time max %d count %d, want 50000 µs (from the actual send) and 3", w.service.Max(), w.service.TotalCount())
	}
}

// lowestEquivalent reports whether got and want fall in the same histogram
// bucket (hdrhistogram keeps 3 significant digits).
func lowestEquivalent(h *hdrhistogram.Histogram, got, want int64) bool {
	return h.ValuesAreEquivalent(got, want)
}

func TestMicrosRoundsUpAndClamps(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{
		{0, 1}, {-time.Second, 1}, {time.Nanosecond, 1}, {999 * time.Nanosecond, 1},
		{time.Microsecond, 1}, {time.Microsecond + 1, 2}, {20 * time.Millisecond, 20_000},
		{1000 * time.Hour, HistogramMaxMicros},
	} {
		if got := micros(tc.d); got != tc.want {
			t.Errorf("micros(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// TestOpenLoopCorrectsCoordinatedOmission: one connection, a request due
// every millisecond, and an upstream that holds everything arriving in the
// first 200 ms after its first request. The requests due in the first 100
// ms cannot be sent before the stall ends, so each of them has a corrected
// latency of at least 100 ms, however fast or slow the machine; the one
// request on the wire shows the stall in service time too.
func TestOpenLoopCorrectsCoordinatedOmission(t *testing.T) {
	const stall = 200 * time.Millisecond
	up := startUpstream(t, upstream.Config{StallFor: stall})
	res, err := Run(context.Background(), Config{
		Name: "stall", URL: up.URL(), Connections: 1, Rate: 1000, Duration: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != Open || res.Errors.Total() != 0 || res.Status.Non2xx() != 0 {
		t.Fatalf("mode %s, errors %+v, statuses %+v", res.Mode, res.Errors, res.Status)
	}
	slow := countAtLeast(res.Latency, 100_000)
	t.Logf("requests=%d dropped=%d corrected ≥100ms: %d; naive max %dµs", res.Requests, res.Dropped, slow, res.ServiceTime.Max())
	if slow < 100 {
		t.Fatalf("%d requests with corrected latency ≥ 100 ms, want the 100 due in the first 100 ms at least", slow)
	}
	if res.ServiceTime.Max() < stall.Microseconds() {
		t.Fatalf("naive max = %d µs: the request caught in the stall should show it", res.ServiceTime.Max())
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
	// The upstream cancels the run at its 10th request: a condition, not a
	// timer racing the schedule.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen atomic.Int64
	addr := serveFunc(t, func(*fasthttp.RequestCtx) {
		if seen.Add(1) == 10 {
			cancel()
		}
	})
	res, err := Run(ctx, Config{URL: "http://" + addr + "/", Connections: 2, Duration: time.Hour, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	// An hour at 100/s is 360000 requests; a stopped run is a handful past
	// the 10th (those in flight, and any the schedule released before the
	// workers saw the stop).
	if res.Requests < 9 || res.Requests > 1000 {
		t.Fatalf("requests = %d, want about 10, and far fewer than an hour's", res.Requests)
	}
}

// serveFunc serves h on 127.0.0.1 until the test ends.
func serveFunc(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return ln.Addr().String()
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
	addr, release, err := loopback.RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	res, err = Run(context.Background(), Config{URL: "http://" + addr + "/", Connections: 2, Duration: time.Minute, MaxRequests: 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Errors.Refused != 20 {
		t.Fatalf("requests %d errors %+v, want 0 answered and 20 refused", res.Requests, res.Errors)
	}
}

// TestProgressLines: each progress tick prints one line, labelled with
// the phase the tick's time falls in. The test delivers the ticks itself
// (a warm-up one, then two in the measured window) and ends the run only
// after the last, so no line depends on how fast the machine is.
func TestProgressLines(t *testing.T) {
	up := startUpstream(t, upstream.Config{})
	var buf bytes.Buffer
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer cancel()
		start := time.Now()
		for _, at := range []time.Time{start.Add(-time.Hour), start.Add(2 * time.Hour), start.Add(3 * time.Hour)} {
			select {
			case ticks <- at:
			case <-ctx.Done():
				return
			}
		}
	}()
	_, err := Run(ctx, Config{
		Name: "prog", URL: up.URL(), Connections: 2, Rate: 200, Warmup: time.Hour,
		Duration: time.Hour, Progress: &buf, progressTicks: ticks,
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d progress lines, want one per tick (3):\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"bench prog: warm-up", "bench prog: measure", "bench prog: measure"} {
		if !strings.HasPrefix(lines[i], want) || !strings.Contains(lines[i], " req/s ") {
			t.Errorf("line %d: %q, want %q...req/s", i, lines[i], want)
		}
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
	if res.FirstFailure != 0 || res.LastFailure != 0 {
		t.Fatalf("no request failed, yet failures at %v..%v", res.FirstFailure, res.LastFailure)
	}
}

// The first and last failures are placed in the measured window, and a
// subprocess's JSON result carries them.
func TestFailureTimes(t *testing.T) {
	up := startUpstream(t, upstream.Config{FailRate: 0.5})
	// Bounded by a count, not a 200 ms window a stalled machine might
	// pass without a request.
	res, err := Run(context.Background(), Config{URL: up.URL(), Connections: 2, Duration: time.Minute, MaxRequests: 40})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status.C5xx == 0 || res.FirstFailure <= 0 || res.LastFailure < res.FirstFailure || res.LastFailure > res.Elapsed {
		t.Fatalf("%d failed: first %v, last %v, window %v", res.Status.C5xx, res.FirstFailure, res.LastFailure, res.Elapsed)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.FirstFailure != res.FirstFailure || back.LastFailure != res.LastFailure {
		t.Fatalf("round trip: failures %v..%v, want %v..%v", back.FirstFailure, back.LastFailure, res.FirstFailure, res.LastFailure)
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
		code, err := w.do()
		w.record(true, code, err, now, now, time.Now())
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
		code, err := w.do()
		w.record(true, code, err, now, now, time.Now())
	}
}

func BenchmarkRecord(b *testing.B) {
	g, err := newGenerator(Config{URL: "http://127.0.0.1:1/", Connections: 1, Duration: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	w := g.workers[0]
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		w.record(true, 200, nil, now, now, now.Add(123*time.Microsecond))
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

// HTTP1Stream reads each answer's body to its end as it comes: 20 MiB
// bodies (more than fasthttp would read whole) all count as answers.
func TestHTTP1StreamReadsBodiesToTheEnd(t *testing.T) {
	up := startUpstream(t, upstream.Config{})
	res, err := Run(context.Background(), Config{
		URL: up.URL() + "?stream=20971520", Protocol: HTTP1Stream, Connections: 2, Duration: time.Minute, MaxRequests: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 4 || res.Errors.Total() != 0 || res.Status.C2xx != 4 {
		t.Fatalf("requests %d, errors %+v, statuses %+v", res.Requests, res.Errors, res.Status)
	}
}
