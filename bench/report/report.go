package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weftmesh/weft/bench/loadgen"
)

// Scenario outcomes.
const (
	StatusOK      = "ok"
	StatusSkipped = "skipped"
	StatusFailed  = "failed"
)

// Report is one benchmark run: where and how it ran and what each scenario
// measured.
type Report struct {
	Title     string     `json:"title"`
	Started   time.Time  `json:"started"`
	Host      Host       `json:"host"`
	Settings  Settings   `json:"settings"`
	Scenarios []Scenario `json:"scenarios"`
	// Baseline names the scenario ratios are taken against ("direct").
	Baseline string   `json:"baseline,omitempty"`
	Notes    []string `json:"notes,omitempty"`
}

// Host describes the machine.
type Host struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel,omitempty"`
}

// Settings are the load parameters shared by every scenario of a run.
type Settings struct {
	Mode        loadgen.Mode `json:"mode"`
	Connections int          `json:"connections"`
	Rate        float64      `json:"rate,omitempty"`
	Warmup      Seconds      `json:"warmup_s"`
	Duration    Seconds      `json:"duration_s"`
	MaxRequests int64        `json:"max_requests"`
	BodySize    int          `json:"body_size"`
	Delay       Seconds      `json:"upstream_delay_s,omitempty"`
	Pinned      bool         `json:"pinned"`
	LoadCPUs    string       `json:"load_cpus,omitempty"`
	ServerCPUs  string       `json:"server_cpus,omitempty"`
	Quick       bool         `json:"quick,omitempty"`
}

// Seconds is a duration written as a number of seconds.
type Seconds float64

// Secs converts d.
func Secs(d time.Duration) Seconds { return Seconds(d.Seconds()) }

// Scenario is one scenario's outcome.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Status is StatusOK, StatusSkipped or StatusFailed; Reason says why
	// for the latter two.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Protocol is what the load generator spoke: http1, h2c, grpc-unary
	// (one request is one call) or grpc-stream (one request is one
	// message answered on a single stream).
	Protocol string `json:"protocol,omitempty"`

	Requests    int64                `json:"requests"`
	RPS         float64              `json:"rps"`
	Elapsed     Seconds              `json:"elapsed_s"`
	Errors      loadgen.ErrorCounts  `json:"errors"`
	Statuses    loadgen.StatusCounts `json:"status_classes"`
	Dropped     int64                `json:"dropped,omitempty"`
	Latency     loadgen.Summary      `json:"latency"`
	ServiceTime *loadgen.Summary     `json:"service_time,omitempty"`
	// CPU is nil when no process was measured (the direct path).
	CPU *CPU `json:"cpu,omitempty"`
	// Client and Upstream are the load generator's and the upstream's CPU
	// over the window, when each ran as its own process (pinned runs of
	// the scenarios that observe them); nil otherwise. They are not part
	// of CPU.
	Client   *ProcessCPU `json:"client_cpu,omitempty"`
	Upstream *ProcessCPU `json:"upstream_cpu,omitempty"`
	// Endpoints compares the proxy's CPU with the client's and upstream's
	// of the Compare scenario when that one is a direct path (no proxy)
	// and both observed their endpoints; nil otherwise.
	Endpoints *EndpointCPU `json:"endpoint_cpu,omitempty"`
	// RPSRatio and P99Ratio compare with the baseline scenario (0 without).
	RPSRatio float64 `json:"rps_ratio,omitempty"`
	P99Ratio float64 `json:"p99_ratio,omitempty"`
	// Compare names the scenario of the same run this one adds something
	// to ("weft" for weft with a filter, "weft-2hop-plain" for the mTLS
	// hop); the Compare ratios are against it (0 when it did not run).
	Compare         string  `json:"compare,omitempty"`
	CompareRPSRatio float64 `json:"compare_rps_ratio,omitempty"`
	CompareP99Ratio float64 `json:"compare_p99_ratio,omitempty"`
	CompareCPURatio float64 `json:"compare_cpu_ratio,omitempty"`
	// Fault is what a fault scenario did while measured, and what followed.
	Fault *Fault `json:"fault,omitempty"`
}

// Fault is a fault a scenario caused during its measured window.
type Fault struct {
	Description string `json:"description"`
	// At is when it happened, from the start of the measured window.
	At Seconds `json:"at_s"`
	// Recovery is the time from the fault to the last failed request (0:
	// none failed after it).
	Recovery Seconds `json:"recovery_s"`
	// FailedAfter reports whether any request failed after the fault.
	FailedAfter bool `json:"failed_after"`
}

// Failed counts the requests that got no response or a non-2xx one.
func (s *Scenario) Failed() int64 { return s.Errors.Total() + s.Statuses.Non2xx() }

// ErrorRate is the share of requests (0..1) the client saw fail: no
// response, or a non-2xx one.
func (s *Scenario) ErrorRate() float64 {
	n := s.Requests + s.Errors.Total()
	if n == 0 {
		return 0
	}
	return float64(s.Failed()) / float64(n)
}

// CPU is what the measured processes (proxy, peer) used over the window.
type CPU struct {
	// Processes names what was measured, e.g. ["weft"] or ["nginx"].
	Processes        []string `json:"processes"`
	Seconds          float64  `json:"seconds"`
	MicrosPerRequest float64  `json:"us_per_request"`
	SecondsPer10k    float64  `json:"seconds_per_10k"`
	PeakRSSBytes     int64    `json:"peak_rss_bytes"`
	// Each splits the figures by process when more than one was measured
	// (two chained sidecars).
	Each []ProcessCPU `json:"each,omitempty"`
}

// ProcessCPU is one measured process's share of a CPU figure.
type ProcessCPU struct {
	Name             string  `json:"name"`
	Seconds          float64 `json:"seconds"`
	MicrosPerRequest float64 `json:"us_per_request"`
	PeakRSSBytes     int64   `json:"peak_rss_bytes"`
}

// EndpointCPU sets a proxy's CPU per request against what the client and
// the upstream cost per request on the direct path of the same run: the
// target "the proxy's CPU within 1.5x of direct's client+server" reads
// ProxyRatio.
type EndpointCPU struct {
	// Direct is the direct scenario's client+upstream CPU µs/request.
	Direct float64 `json:"direct_us_per_request"`
	// Proxied is this scenario's client+upstream CPU µs/request (the
	// endpoints' own cost, changed by the proxy in between).
	Proxied float64 `json:"proxied_us_per_request"`
	// Proxy is the proxy's CPU µs/request (CPU.MicrosPerRequest).
	Proxy float64 `json:"proxy_us_per_request"`
	// Added is the whole system's CPU µs/request this scenario adds to the
	// direct one: Proxy + Proxied - Direct.
	Added float64 `json:"added_us_per_request"`
	// ProxyRatio is Proxy/Direct; AddedRatio is Added/Direct.
	ProxyRatio float64 `json:"proxy_ratio"`
	AddedRatio float64 `json:"added_ratio"`
}

// NewProcessCPU is one process's CPU over requests.
func NewProcessCPU(name string, cpu time.Duration, peakRSS, requests int64) *ProcessCPU {
	p := &ProcessCPU{Name: name, Seconds: cpu.Seconds(), PeakRSSBytes: peakRSS}
	if requests > 0 {
		p.MicrosPerRequest = p.Seconds * 1e6 / float64(requests)
	}
	return p
}

// endpointsCPU is the client's plus the upstream's CPU µs/request, and
// whether both were observed.
func (s *Scenario) endpointsCPU() (float64, bool) {
	if s.Client == nil || s.Upstream == nil {
		return 0, false
	}
	return s.Client.MicrosPerRequest + s.Upstream.MicrosPerRequest, true
}

// AddProcess appends one process's share to c.Each (requests as in NewCPU).
func (c *CPU) AddProcess(name string, cpu time.Duration, peakRSS, requests int64) {
	p := ProcessCPU{Name: name, Seconds: cpu.Seconds(), PeakRSSBytes: peakRSS}
	if requests > 0 {
		p.MicrosPerRequest = p.Seconds * 1e6 / float64(requests)
	}
	c.Each = append(c.Each, p)
}

// NewCPU derives the per-request figures from a CPU time over requests.
func NewCPU(processes []string, cpu time.Duration, peakRSS, requests int64) *CPU {
	c := &CPU{Processes: processes, Seconds: cpu.Seconds(), PeakRSSBytes: peakRSS}
	if requests > 0 {
		c.MicrosPerRequest = c.Seconds * 1e6 / float64(requests)
		c.SecondsPer10k = c.Seconds * 1e4 / float64(requests)
	}
	return c
}

// OK reports whether s ran and measured.
func (s *Scenario) OK() bool { return s.Status == StatusOK }

// ComputeRatios fills RPSRatio and P99Ratio of every measured scenario
// against the one named baseline, when that one ran, and when both count
// the same things: a gRPC scenario (calls, or messages on a stream) only
// against a baseline of the same protocol; HTTP/1.1 and h2c requests
// compare.
func (r *Report) ComputeRatios(baseline string) {
	var base *Scenario
	for i := range r.Scenarios {
		if r.Scenarios[i].Name == baseline && r.Scenarios[i].OK() {
			base = &r.Scenarios[i]
		}
	}
	if base == nil {
		return
	}
	r.Baseline = baseline
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		if !s.OK() || !comparable(s.Protocol, base.Protocol) {
			continue
		}
		if base.RPS > 0 {
			s.RPSRatio = s.RPS / base.RPS
		}
		if base.Latency.P99 > 0 {
			s.P99Ratio = float64(s.Latency.P99) / float64(base.Latency.P99)
		}
	}
}

// comparable reports whether requests of load protocols a and b are the
// same unit: any HTTP ones ("", http1, h2c) are; a gRPC one only equals
// itself.
func comparable(a, b string) bool {
	grpcA, grpcB := strings.HasPrefix(a, "grpc"), strings.HasPrefix(b, "grpc")
	if grpcA || grpcB {
		return a == b
	}
	return true
}

// ComputeComparisons fills the Compare ratios of every measured scenario
// whose Compare scenario was measured in the same run.
func (r *Report) ComputeComparisons() {
	byName := map[string]*Scenario{}
	for i := range r.Scenarios {
		if r.Scenarios[i].OK() {
			byName[r.Scenarios[i].Name] = &r.Scenarios[i]
		}
	}
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		s.CompareRPSRatio, s.CompareP99Ratio, s.CompareCPURatio = 0, 0, 0
		s.Endpoints = nil
		base := byName[s.Compare]
		if !s.OK() || base == nil || base == s {
			continue
		}
		if base.RPS > 0 {
			s.CompareRPSRatio = s.RPS / base.RPS
		}
		if base.Latency.P99 > 0 {
			s.CompareP99Ratio = float64(s.Latency.P99) / float64(base.Latency.P99)
		}
		if s.CPU != nil && base.CPU != nil && base.CPU.MicrosPerRequest > 0 {
			s.CompareCPURatio = s.CPU.MicrosPerRequest / base.CPU.MicrosPerRequest
		}
		direct, okBase := base.endpointsCPU()
		proxied, okS := s.endpointsCPU()
		if s.CPU != nil && base.CPU == nil && okBase && okS && direct > 0 && s.Protocol == base.Protocol {
			e := &EndpointCPU{Direct: direct, Proxied: proxied, Proxy: s.CPU.MicrosPerRequest}
			e.Added = e.Proxy + e.Proxied - e.Direct
			e.ProxyRatio, e.AddedRatio = e.Proxy/e.Direct, e.Added/e.Direct
			s.Endpoints = e
		}
	}
}

// Measured returns the scenarios that ran, in order.
func (r *Report) Measured() []Scenario {
	var out []Scenario
	for _, s := range r.Scenarios {
		if s.OK() {
			out = append(out, s)
		}
	}
	return out
}

// JSON writes the report as indented JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: json: %w", err)
	}
	return nil
}

// Files written by WriteFiles, relative to its directory.
const (
	FileMarkdown   = "report.md"
	FileJSON       = "report.json"
	FileLatency    = "latency.svg"
	FileThroughput = "throughput.svg"
	FileCPU        = "cpu.svg"
)

// WriteFiles writes the markdown, JSON and SVG charts into dir (created if
// missing) and returns the paths written.
func (r *Report) WriteFiles(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	outputs := []struct {
		name  string
		write func(io.Writer) error
	}{
		{FileMarkdown, r.Markdown},
		{FileJSON, r.JSON},
		{FileLatency, r.LatencySVG},
		{FileThroughput, r.ThroughputSVG},
		{FileCPU, r.CPUSVG},
	}
	var paths []string
	for _, o := range outputs {
		path := filepath.Join(dir, o.name)
		f, err := os.Create(path)
		if err != nil {
			return paths, fmt.Errorf("report: %w", err)
		}
		err = o.write(f)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("report: %s: %w", path, cerr)
		}
		if err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}
