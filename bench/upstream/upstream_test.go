package upstream

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
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

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	code, body, err := fasthttp.GetTimeout(nil, url, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

func TestBodies(t *testing.T) {
	s := start(t, Config{})
	tests := []struct {
		query    string
		wantCode int
		wantLen  int
	}{
		{"", 200, DefaultBodySize},
		{"?size=0", 200, 0},
		{"?size=1000", 200, 1000},
		{"?size=1048576", 200, MaxBodySize},
		{"?size=1048577", 400, -1},
		{"?size=-1", 400, -1},
		{"?size=abc", 400, -1},
	}
	for _, tt := range tests {
		code, body := get(t, s.URL()+tt.query)
		if code != tt.wantCode || tt.wantLen >= 0 && len(body) != tt.wantLen {
			t.Errorf("%q: status %d, %d bytes; want %d, %d bytes", tt.query, code, len(body), tt.wantCode, tt.wantLen)
		}
	}
	sized := start(t, Config{BodySize: 4096})
	if _, body := get(t, sized.URL()); len(body) != 4096 || !strings.HasPrefix(string(body), "abcdef") {
		t.Fatalf("fixed 4096-byte body: got %d bytes %.10q", len(body), body)
	}
	none := start(t, Config{BodySize: -1})
	if code, body := get(t, none.URL()); code != 200 || len(body) != 0 {
		t.Fatalf("no body: %d, %d bytes", code, len(body))
	}
	// ?stream=N: a body of any length, written as it is read, in
	// WriteBlock writes that wrap around the 1 MiB block.
	code, body := get(t, s.URL()+"?stream=3000000")
	if code != 200 || len(body) != 3000000 {
		t.Fatalf("stream: %d, %d bytes", code, len(body))
	}
	for i, c := range body {
		if want := 'a' + byte((i%MaxBodySize)%26); c != want {
			t.Fatalf("stream: byte %d is %q, want %q", i, c, want)
		}
	}
	if code, _ := get(t, s.URL()+"?stream=x"); code != 400 {
		t.Fatalf("stream=x: %d", code)
	}
	if s.Requests() != uint64(len(tests))+2 {
		t.Fatalf("Requests() = %d, want %d", s.Requests(), len(tests))
	}
}

func TestFailRateIsExact(t *testing.T) {
	s := start(t, Config{FailRate: 0.1})
	fails := 0
	for range 100 {
		if code, _ := get(t, s.URL()); code == 503 {
			fails++
		}
	}
	if fails != 10 || s.Failures() != 10 {
		t.Fatalf("%d (counted %d) of 100 failed, want exactly 10", fails, s.Failures())
	}
}

// fakeTime is the server's clock and sleep in tests: the clock moves only
// when the test moves it, and sleeps are recorded, not slept.
type fakeTime struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func (f *fakeTime) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeTime) Sleep(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slept = append(f.slept, d)
}

func (f *fakeTime) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = t
}

// Slept returns the sleeps recorded since the last call.
func (f *fakeTime) Slept() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.slept
	f.slept = nil
	return d
}

// startFake starts a server on a fake clock set to t0.
func startFake(t *testing.T, cfg Config, t0 time.Time) (*Server, *fakeTime) {
	t.Helper()
	ft := &fakeTime{now: t0}
	s, err := newServer(cfg, ft.Now, ft.Sleep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, ft
}

func TestDelay(t *testing.T) {
	s, ft := startFake(t, Config{Delay: 30 * time.Millisecond}, time.Unix(1000, 0))
	for range 2 {
		if code, _ := get(t, s.URL()); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if got := ft.Slept(); len(got) != 2 || got[0] != 30*time.Millisecond || got[1] != 30*time.Millisecond {
		t.Fatalf("held %v, want each of the 2 responses held 30ms", got)
	}
}

// TestStallHoldsRequestsOnce: the window opens StallAfter after the first
// request and lasts StallFor; a request inside it is held until it ends,
// and there is only ever one window.
func TestStallHoldsRequestsOnce(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s, ft := startFake(t, Config{StallAfter: 50 * time.Millisecond, StallFor: 300 * time.Millisecond}, t0)
	ms := time.Millisecond
	for _, tc := range []struct {
		at   time.Duration // since the first request
		hold time.Duration // 0: answered at once
	}{
		{0, 0}, // the first request starts the clock
		{49 * ms, 0},
		{50 * ms, 300 * ms}, // the window opens
		{100 * ms, 250 * ms},
		{100 * ms, 250 * ms},
		{349 * ms, 1 * ms},
		{350 * ms, 0}, // and closes
		{time.Hour, 0},
	} {
		ft.Set(t0.Add(tc.at))
		if code, _ := get(t, s.URL()); code != 200 {
			t.Fatalf("at %v: status %d", tc.at, code)
		}
		got := ft.Slept()
		switch {
		case tc.hold == 0 && len(got) != 0:
			t.Errorf("at %v: held %v, want answered at once", tc.at, got)
		case tc.hold != 0 && (len(got) != 1 || got[0] != tc.hold):
			t.Errorf("at %v: held %v, want %v (to the end of the window)", tc.at, got, tc.hold)
		}
	}
}

func TestServeStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Config{}, func(a string) { addrs <- a }) }()
	addr := <-addrs
	if code, _ := get(t, "http://"+addr+"/"); code != 200 {
		t.Fatalf("status %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, _, err := fasthttp.GetTimeout(nil, "http://"+addr+"/", time.Second); err == nil {
		t.Fatal("still answering after Serve returned")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{FailRate: 1.5}, {Delay: -1}, {BodySize: MaxBodySize + 1}, {Addr: "256.0.0.1:0"}} {
		if s, err := Start(cfg); err == nil {
			s.Close()
			t.Errorf("%+v: want an error", cfg)
		}
	}
}

func BenchmarkUpstream(b *testing.B) {
	s, err := Start(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	hc := &fasthttp.HostClient{Addr: s.Addr()}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.SetRequestURI(s.URL() + "?size=128")
	b.ReportAllocs()
	for b.Loop() {
		if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			b.Fatal(err, resp.StatusCode())
		}
	}
}

// ?sink reads a POST body to its end and answers its length: streamed (any
// length) with StreamRequests, whole (at most fasthttp's 4 MiB) without.
func TestSink(t *testing.T) {
	post := func(t *testing.T, url string, n int) (int, string) {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetBody(make([]byte, n))
		if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode(), string(resp.Body())
	}
	streamed := start(t, Config{StreamRequests: true})
	for _, n := range []int{0, 1000, 6 << 20} {
		if code, body := post(t, streamed.URL()+"?sink", n); code != 200 || body != strconv.Itoa(n) {
			t.Errorf("streamed sink, %d bytes: %d %q", n, code, body)
		}
	}
	whole := start(t, Config{})
	if code, body := post(t, whole.URL()+"?sink", 1000); code != 200 || body != "1000" {
		t.Errorf("sink, 1000 bytes: %d %q", code, body)
	}
}
