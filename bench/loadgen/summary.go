package loadgen

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Summary is a latency histogram reduced to the figures a report shows, in
// microseconds.
type Summary struct {
	Count  int64   `json:"count"`
	Min    int64   `json:"min_us"`
	Mean   float64 `json:"mean_us"`
	P50    int64   `json:"p50_us"`
	P90    int64   `json:"p90_us"`
	P99    int64   `json:"p99_us"`
	P999   int64   `json:"p999_us"`
	Max    int64   `json:"max_us"`
	StdDev float64 `json:"stddev_us"`
}

// Summarize reduces h to a Summary; a nil or empty histogram gives zeros.
func Summarize(h *hdrhistogram.Histogram) Summary {
	if h == nil || h.TotalCount() == 0 {
		return Summary{}
	}
	return Summary{
		Count:  h.TotalCount(),
		Min:    h.Min(),
		Mean:   h.Mean(),
		P50:    h.ValueAtQuantile(50),
		P90:    h.ValueAtQuantile(90),
		P99:    h.ValueAtQuantile(99),
		P999:   h.ValueAtQuantile(99.9),
		Max:    h.Max(),
		StdDev: h.StdDev(),
	}
}

// wireResult is Result as JSON: histograms in HdrHistogram's compressed V2
// encoding, so a load generator running as a subprocess hands back full
// distributions, not just percentiles.
type wireResult struct {
	Name           string       `json:"name"`
	Mode           Mode         `json:"mode"`
	Connections    int          `json:"connections"`
	Rate           float64      `json:"rate,omitempty"`
	Requests       int64        `json:"requests"`
	Errors         ErrorCounts  `json:"errors"`
	Status         StatusCounts `json:"status"`
	Dropped        int64        `json:"dropped,omitempty"`
	WarmupRequests int64        `json:"warmup_requests"`
	ElapsedNS      int64        `json:"elapsed_ns"`
	Latency        string       `json:"latency_hdr"`
	ServiceTime    string       `json:"service_time_hdr"`
	FirstFailureNS int64        `json:"first_failure_ns,omitempty"`
	LastFailureNS  int64        `json:"last_failure_ns,omitempty"`
}

// MarshalJSON encodes r with its histograms.
func (r *Result) MarshalJSON() ([]byte, error) {
	w := wireResult{
		Name: r.Name, Mode: r.Mode, Connections: r.Connections, Rate: r.Rate,
		Requests: r.Requests, Errors: r.Errors, Status: r.Status, Dropped: r.Dropped,
		WarmupRequests: r.WarmupRequests, ElapsedNS: int64(r.Elapsed),
		FirstFailureNS: int64(r.FirstFailure), LastFailureNS: int64(r.LastFailure),
	}
	var err error
	if w.Latency, err = encodeHistogram(r.Latency); err != nil {
		return nil, fmt.Errorf("loadgen result %q: latency: %w", r.Name, err)
	}
	if w.ServiceTime, err = encodeHistogram(r.ServiceTime); err != nil {
		return nil, fmt.Errorf("loadgen result %q: service time: %w", r.Name, err)
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (r *Result) UnmarshalJSON(b []byte) error {
	var w wireResult
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("loadgen result: %w", err)
	}
	lat, err := decodeHistogram(w.Latency)
	if err != nil {
		return fmt.Errorf("loadgen result %q: latency: %w", w.Name, err)
	}
	svc, err := decodeHistogram(w.ServiceTime)
	if err != nil {
		return fmt.Errorf("loadgen result %q: service time: %w", w.Name, err)
	}
	*r = Result{
		Name: w.Name, Mode: w.Mode, Connections: w.Connections, Rate: w.Rate,
		Requests: w.Requests, Errors: w.Errors, Status: w.Status, Dropped: w.Dropped,
		WarmupRequests: w.WarmupRequests, Elapsed: time.Duration(w.ElapsedNS),
		Latency: lat, ServiceTime: svc,
		FirstFailure: time.Duration(w.FirstFailureNS), LastFailure: time.Duration(w.LastFailureNS),
	}
	return nil
}

// encodeHistogram returns h in HdrHistogram's base64 V2 compressed form.
func encodeHistogram(h *hdrhistogram.Histogram) (string, error) {
	if h == nil {
		h = NewHistogram()
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	return string(b), err
}

func decodeHistogram(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return NewHistogram(), nil
	}
	return hdrhistogram.Decode([]byte(s))
}
