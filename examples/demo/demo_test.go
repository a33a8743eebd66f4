package demo

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestDemoRunsAndShowsItsFeatures runs the embedded demo on free ports and
// checks the tour it prints: the split, the A/B route and the retries.
func TestDemoRunsAndShowsItsFeatures(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{Port: 0, Out: &syncWriter{b: &out, ready: cancel}}) }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	text := out.String()
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

// syncWriter collects output and ends the demo once the tour has printed.
type syncWriter struct {
	b     *bytes.Buffer
	ready context.CancelFunc
}

func (w *syncWriter) Write(p []byte) (int, error) {
	n, err := w.b.Write(p)
	if bytes.Contains(p, []byte("Stop with Ctrl-C")) {
		w.ready()
	}
	return n, err
}
