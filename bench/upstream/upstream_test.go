package upstream

import (
	"context"
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
	if s.Requests() != uint64(len(tests)) {
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

func TestDelay(t *testing.T) {
	s := start(t, Config{Delay: 30 * time.Millisecond})
	t0 := time.Now()
	if code, _ := get(t, s.URL()); code != 200 {
		t.Fatalf("status %d", code)
	}
	if d := time.Since(t0); d < 30*time.Millisecond {
		t.Fatalf("answered after %v, before the 30 ms delay", d)
	}
}

func TestStallHoldsRequestsOnce(t *testing.T) {
	s := start(t, Config{StallAfter: 50 * time.Millisecond, StallFor: 300 * time.Millisecond})
	get(t, s.URL()) // the first request starts the clock
	time.Sleep(100 * time.Millisecond)
	// Inside the window: held until it ends (about 250 ms from now).
	var wg sync.WaitGroup
	held := make([]time.Duration, 3)
	for i := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			get(t, s.URL())
			held[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	for i, d := range held {
		if d < 150*time.Millisecond {
			t.Errorf("request %d in the stall window answered after %v, want held until the window ends", i, d)
		}
	}
	// After the window: never again.
	t0 := time.Now()
	get(t, s.URL())
	if d := time.Since(t0); d >= 250*time.Millisecond {
		t.Errorf("request after the window took %v: stalled twice", d)
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
