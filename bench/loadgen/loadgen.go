package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// Mode is the shape of the load: closed or open loop.
type Mode string

const (
	// Closed sends back to back on each connection: throughput is whatever the
	// target sustains, latency is per request.
	Closed Mode = "closed"
	// Open sends at a fixed rate regardless of how the target keeps up;
	// latency counts from the intended send time.
	Open Mode = "open"
)

// Defaults applied by Run when a Config field is zero.
const (
	DefaultConnections = 16
	DefaultTimeout     = 10 * time.Second
	DefaultMaxRequests = 100_000_000
	// DefaultConns is how many TCP connections a multiplexing protocol
	// (h2c, gRPC) spreads its requests in flight over.
	DefaultConns = 4
	// HistogramMaxMicros is the largest latency recorded (60 s); larger
	// values are clamped to it.
	HistogramMaxMicros = 60_000_000
)

// Protocols the built-in clients speak (Config.Protocol).
const (
	// HTTP1 is HTTP/1.1 over Connections keep-alive connections (fasthttp).
	HTTP1 = "http1"
	// H2C is HTTP/2 without TLS (prior knowledge) through Go's
	// golang.org/x/net/http2 client: Connections requests in flight over
	// Conns connections.
	H2C = "h2c"
	// HTTP1Stream is HTTP1 with each answer's body read as it comes and
	// discarded (downloads of any size); a request's latency runs to the
	// body's last byte.
	HTTP1Stream = "http1-stream"
)

// Client sends the requests of a run instead of the built-in HTTP client
// (the gRPC generator in bench/grpcload is one).
type Client interface {
	// Do sends one request for worker w (0 <= w < Config.Connections) and
	// waits for its answer, at most timeout. status is the HTTP status, or
	// what the protocol's status maps to (gRPC OK is 200). err means no
	// answer; an error with a Timeout() true method counts as a timeout.
	// Do is called concurrently for different workers, never twice at once
	// for the same worker.
	Do(w int, timeout time.Duration) (status int, err error)
	// Close releases the client's connections.
	Close() error
}

// Config describes one load run.
type Config struct {
	// Name labels progress lines (the scenario name).
	Name string
	// URL is loaded with GET (or Method); http or https (http only for
	// h2c). A Client takes its host:port from it.
	URL    string
	Method string
	// Protocol is HTTP1 (the default) or H2C. A Client, when set, replaces
	// both; Protocol then only names what it speaks (e.g. "grpc-unary").
	Protocol string
	// Conns is how many TCP connections the Connections requests in flight
	// share with a multiplexing protocol (h2c, a gRPC Client):
	// DefaultConns when zero, never more than Connections.
	Conns int
	// MessageSize is the payload a Client sends and asks back per request
	// (gRPC), in bytes.
	MessageSize int
	// Client, when set, sends every request (see Client); Run does not
	// close it.
	Client Client
	// Headers are sent with every request (an Authorization token, say).
	Headers []Header
	// Connections is the number of keep-alive connections (closed loop) or
	// workers, hence the most requests in flight (open loop).
	Connections int
	// Rate in requests per second; > 0 selects the open loop.
	Rate float64
	// Warmup runs before the measured window; its requests are not recorded.
	Warmup time.Duration
	// Duration is the measured window (required).
	Duration time.Duration
	// MaxRequests bounds the requests started in the measured window
	// (DefaultMaxRequests when zero).
	MaxRequests int64
	// Timeout bounds each request (DefaultTimeout when zero).
	Timeout time.Duration
	// Progress receives one line per ProgressInterval (1 s by default); nil
	// for none.
	Progress         io.Writer
	ProgressInterval time.Duration
	// progressTicks, when set, replaces the ProgressInterval ticker (tests
	// deliver ticks, and their times, themselves).
	progressTicks <-chan time.Time
	// OnMeasureStart and OnMeasureEnd, when set, are called as the measured
	// window opens and once every request has finished, so that a caller
	// can sample process CPU over exactly that window.
	OnMeasureStart func()
	OnMeasureEnd   func()
}

// Header is one request header the generator sends.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ParseHeader parses "Name: value" (curl's -H form).
func ParseHeader(s string) (Header, error) {
	name, value, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t\r\n") || strings.ContainsAny(value, "\r\n\x00") {
		return Header{}, fmt.Errorf("header %q: want \"Name: value\"", s)
	}
	return Header{Name: name, Value: strings.TrimSpace(value)}, nil
}

// String is the header in "Name: value" form.
func (h Header) String() string { return h.Name + ": " + h.Value }

// ErrorCounts classifies transport errors (no response).
type ErrorCounts struct {
	Timeout int64 `json:"timeout"`
	Refused int64 `json:"refused"`
	Reset   int64 `json:"reset"`
	Other   int64 `json:"other"`
}

// Total is the sum of all error kinds.
func (e ErrorCounts) Total() int64 { return e.Timeout + e.Refused + e.Reset + e.Other }

// StatusCounts counts responses by status class.
type StatusCounts struct {
	C1xx  int64 `json:"1xx"`
	C2xx  int64 `json:"2xx"`
	C3xx  int64 `json:"3xx"`
	C4xx  int64 `json:"4xx"`
	C5xx  int64 `json:"5xx"`
	Other int64 `json:"other"`
}

// Non2xx counts every response that is not 2xx.
func (s StatusCounts) Non2xx() int64 { return s.C1xx + s.C3xx + s.C4xx + s.C5xx + s.Other }

// Result is what one run measured, for the measured window only.
type Result struct {
	Name        string
	Mode        Mode
	Connections int
	Rate        float64
	// Requests is the number of responses received (any status).
	Requests int64
	// Errors counts requests that got no response, by kind.
	Errors ErrorCounts
	Status StatusCounts
	// Dropped counts open-loop sends that were still queued when the run
	// had to stop (the target fell behind by more than Timeout).
	Dropped int64
	// WarmupRequests were sent before the measured window and not recorded.
	WarmupRequests int64
	// Elapsed is the measured window, from its start until the last
	// request of the window finished.
	Elapsed time.Duration
	// Latency, in microseconds: in the open loop from the intended send
	// time (corrected for coordinated omission), else from the send.
	Latency *hdrhistogram.Histogram
	// ServiceTime, in microseconds, always from the actual send. In the
	// closed loop it equals Latency.
	ServiceTime *hdrhistogram.Histogram
	// FirstFailure and LastFailure are when the first and the last
	// measured request that failed (no response, or not 2xx) finished,
	// from the start of the measured window; both zero when none failed.
	// A fault scenario reads its time to recover from them.
	FirstFailure, LastFailure time.Duration
}

// RPS is the measured throughput: responses per second of the window.
func (r *Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// NewHistogram returns an empty latency histogram (1 µs to 60 s, 3
// significant figures), the one every Result uses.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, HistogramMaxMicros, 3)
}

// Run generates the load cfg describes and returns what it measured. It
// returns when the measured window has passed (or MaxRequests were started,
// or ctx is done) and every request in flight has finished.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	g, err := newGenerator(cfg)
	if err != nil {
		return nil, err
	}
	defer g.hc.CloseIdleConnections()
	if g.ownClient {
		defer g.client.Close()
	}
	return g.run(ctx), nil
}

type generator struct {
	cfg  Config
	mode Mode
	hc   *fasthttp.HostClient
	// client, when set, sends instead of hc; ownClient: Run closes it.
	client    Client
	ownClient bool
	timeout   time.Duration
	max       int64
	start     time.Time
	warmEnd   time.Time
	end       time.Time
	hardStop  time.Time

	stop     atomic.Bool
	stopCh   chan struct{}
	stopOnce sync.Once
	issued   atomic.Int64 // measured requests started (bounded by max)

	// open loop
	interval float64 // ns between intended sends
	slot     atomic.Int64
	maxSlot  int64

	workers []*worker
}

func newGenerator(cfg Config) (*generator, error) {
	if cfg.Duration <= 0 {
		return nil, fmt.Errorf("loadgen %q: duration must be > 0", cfg.Name)
	}
	if cfg.Warmup < 0 || cfg.Rate < 0 || cfg.Connections < 0 || cfg.MaxRequests < 0 {
		return nil, fmt.Errorf("loadgen %q: warmup, rate, connections and max requests must not be negative", cfg.Name)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("loadgen %q: url %q: %w", cfg.Name, cfg.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("loadgen %q: url %q: want http://host:port/path or https://...", cfg.Name, cfg.URL)
	}
	if cfg.Client == nil {
		switch cfg.Protocol {
		case "", HTTP1, HTTP1Stream:
		case H2C:
			if u.Scheme != "http" {
				return nil, fmt.Errorf("loadgen %q: url %q: h2c is HTTP/2 without TLS, want http://", cfg.Name, cfg.URL)
			}
		default:
			return nil, fmt.Errorf("loadgen %q: protocol %q: want %s, %s or %s", cfg.Name, cfg.Protocol, HTTP1, HTTP1Stream, H2C)
		}
	}
	for i, h := range cfg.Headers {
		if _, err := ParseHeader(h.String()); err != nil {
			return nil, fmt.Errorf("loadgen %q: headers[%d]: %w", cfg.Name, i, err)
		}
	}
	if cfg.Connections == 0 {
		cfg.Connections = DefaultConnections
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRequests == 0 {
		cfg.MaxRequests = DefaultMaxRequests
	}
	if cfg.Method == "" {
		cfg.Method = fasthttp.MethodGet
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = time.Second
	}
	if cfg.Conns <= 0 {
		cfg.Conns = DefaultConns
	}
	cfg.Conns = min(cfg.Conns, cfg.Connections)
	g := &generator{
		cfg:     cfg,
		mode:    Closed,
		timeout: cfg.Timeout,
		max:     cfg.MaxRequests,
		stopCh:  make(chan struct{}),
	}
	if cfg.Rate > 0 {
		g.mode = Open
		g.interval = float64(time.Second) / cfg.Rate
	}
	g.hc = &fasthttp.HostClient{
		Addr:                          u.Host,
		Name:                          "weft-bench",
		IsTLS:                         u.Scheme == "https",
		MaxConns:                      cfg.Connections,
		MaxConnWaitTimeout:            cfg.Timeout,
		MaxIdleConnDuration:           time.Minute,
		ReadTimeout:                   cfg.Timeout,
		WriteTimeout:                  cfg.Timeout,
		MaxIdemponentCallAttempts:     1, // a retry would hide an error
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		StreamResponseBody:            cfg.Protocol == HTTP1Stream,
	}
	if g.hc.IsTLS {
		// Benchmarks target local test servers with throwaway certificates.
		g.hc.TLSConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback benchmark target
	}
	switch {
	case cfg.Client != nil:
		g.client = cfg.Client
	case cfg.Protocol == H2C:
		g.client = newH2CClient(cfg, u.Host)
		g.ownClient = true
	}
	for i := 0; i < cfg.Connections; i++ {
		w := &worker{
			id:      i,
			g:       g,
			req:     fasthttp.AcquireRequest(),
			resp:    fasthttp.AcquireResponse(),
			latency: NewHistogram(),
		}
		if g.mode == Open {
			w.service = NewHistogram()
		} else {
			w.service = w.latency
		}
		w.req.SetRequestURI(cfg.URL)
		w.req.Header.SetMethod(cfg.Method)
		for _, h := range cfg.Headers {
			w.req.Header.Add(h.Name, h.Value)
		}
		g.workers = append(g.workers, w)
	}
	return g, nil
}

func (g *generator) halt() {
	g.stopOnce.Do(func() {
		g.stop.Store(true)
		close(g.stopCh)
	})
}

func (g *generator) run(ctx context.Context) *Result {
	g.start = time.Now()
	g.warmEnd = g.start.Add(g.cfg.Warmup)
	g.end = g.warmEnd.Add(g.cfg.Duration)
	// Open-loop workers catch up on a backlog after end, but no longer than
	// one request timeout: what is still queued then is counted as dropped.
	g.hardStop = g.end.Add(g.timeout)
	if g.mode == Open {
		warmSlots := int64(float64(g.cfg.Warmup) / g.interval)
		if float64(warmSlots)*g.interval < float64(g.cfg.Warmup) {
			warmSlots++
		}
		g.maxSlot = warmSlots + g.max
	}

	var wg sync.WaitGroup
	for _, w := range g.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.mode == Open {
				w.runOpen()
			} else {
				w.runClosed()
			}
		}()
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()

	g.supervise(ctx, allDone)
	finished := time.Now()
	if g.cfg.OnMeasureEnd != nil {
		g.cfg.OnMeasureEnd()
	}

	res := &Result{
		Name:        g.cfg.Name,
		Mode:        g.mode,
		Connections: g.cfg.Connections,
		Rate:        g.cfg.Rate,
		Latency:     NewHistogram(),
		ServiceTime: NewHistogram(),
	}
	if finished.After(g.warmEnd) {
		res.Elapsed = finished.Sub(g.warmEnd)
	}
	anyFailed := false
	for _, w := range g.workers {
		res.Latency.Merge(w.latency)
		res.ServiceTime.Merge(w.service)
		res.Requests += w.measured
		res.WarmupRequests += w.warm
		res.Errors.Timeout += w.errs.Timeout
		res.Errors.Refused += w.errs.Refused
		res.Errors.Reset += w.errs.Reset
		res.Errors.Other += w.errs.Other
		res.Status.C1xx += w.status.C1xx
		res.Status.C2xx += w.status.C2xx
		res.Status.C3xx += w.status.C3xx
		res.Status.C4xx += w.status.C4xx
		res.Status.C5xx += w.status.C5xx
		res.Status.Other += w.status.Other
		if !w.firstFail.IsZero() {
			first, last := w.firstFail.Sub(g.warmEnd), w.lastFail.Sub(g.warmEnd)
			if !anyFailed || first < res.FirstFailure {
				res.FirstFailure = first
			}
			res.LastFailure = max(res.LastFailure, last)
			anyFailed = true
		}
		fasthttp.ReleaseRequest(w.req)
		fasthttp.ReleaseResponse(w.resp)
	}
	if g.mode == Open && ctx.Err() == nil {
		// Slots never sent: those due before the end of the window (and
		// within the request bound) that were still queued when the run
		// had to stop.
		due := min(g.maxSlot, int64(math.Ceil(float64(g.end.Sub(g.start))/g.interval)))
		var sent int64
		for _, w := range g.workers {
			sent += w.sent
		}
		if sent < due {
			res.Dropped = due - sent
		}
	}
	return res
}

// supervise fires the measure-start hook, prints progress and stops the
// workers on ctx or at the hard stop, until every worker has returned.
func (g *generator) supervise(ctx context.Context, allDone <-chan struct{}) {
	ticks := g.cfg.progressTicks
	if ticks == nil {
		tick := time.NewTicker(g.cfg.ProgressInterval)
		defer tick.Stop()
		ticks = tick.C
	}
	warm := time.NewTimer(time.Until(g.warmEnd))
	defer warm.Stop()
	hard := time.NewTimer(time.Until(g.hardStop))
	defer hard.Stop()
	warmFired := false
	fireWarm := func() {
		if !warmFired {
			warmFired = true
			if g.cfg.OnMeasureStart != nil {
				g.cfg.OnMeasureStart()
			}
		}
	}
	if g.cfg.Warmup <= 0 {
		fireWarm()
	}
	var lastDone int64
	lastAt := g.start
	for {
		select {
		case <-allDone:
			fireWarm()
			return
		case <-warm.C:
			fireWarm()
		case <-hard.C:
			g.halt()
		case <-ctx.Done():
			g.halt()
		case now := <-ticks:
			if g.cfg.Progress == nil {
				continue
			}
			var done, errs int64
			for _, w := range g.workers {
				done += w.done.Load()
				errs += w.errCount.Load()
			}
			phase := "warm-up"
			elapsed := now.Sub(g.start)
			if !now.Before(g.warmEnd) {
				phase = "measure"
				elapsed = now.Sub(g.warmEnd)
			}
			rate := float64(done-lastDone) / now.Sub(lastAt).Seconds()
			fmt.Fprintf(g.cfg.Progress, "bench %s: %s %4.1fs  %d req  %.0f req/s  %d errors\n",
				g.cfg.Name, phase, elapsed.Seconds(), done, rate, errs)
			lastDone, lastAt = done, now
		}
	}
}

// worker owns one request/response pair and its own histograms, so the
// request loop shares nothing but a few atomics.
type worker struct {
	id       int
	g        *generator
	req      *fasthttp.Request
	resp     *fasthttp.Response
	buf      []byte // HTTP1Stream's body copy buffer
	latency  *hdrhistogram.Histogram
	service  *hdrhistogram.Histogram
	measured int64
	warm     int64
	sent     int64 // open loop: slots sent
	errs     ErrorCounts
	status   StatusCounts
	// firstFail and lastFail are when this worker's first and last failed
	// measured request finished (zero: none failed).
	firstFail, lastFail time.Time
	// done and errCount are read by the progress line while the run goes on.
	done     atomic.Int64
	errCount atomic.Int64
	_        [64]byte // keep hot counters of neighbouring workers apart
}

func (w *worker) runClosed() {
	g := w.g
	for !g.stop.Load() {
		now := time.Now()
		if !now.Before(g.end) {
			return
		}
		measured := !now.Before(g.warmEnd)
		if measured && g.issued.Add(1) > g.max {
			g.halt()
			return
		}
		status, err := w.do()
		w.record(measured, status, err, now, now, time.Now())
	}
}

func (w *worker) runOpen() {
	g := w.g
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for !g.stop.Load() {
		k := g.slot.Add(1) - 1
		if k >= g.maxSlot {
			return
		}
		intended := g.start.Add(time.Duration(float64(k) * g.interval))
		if !intended.Before(g.end) {
			return
		}
		if d := time.Until(intended); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-g.stopCh:
				return
			}
		}
		sent := time.Now()
		if !sent.Before(g.hardStop) {
			g.halt()
			return
		}
		w.sent++
		status, err := w.do()
		w.record(!intended.Before(g.warmEnd), status, err, intended, sent, time.Now())
	}
}

// do sends one request and returns the answer's status.
func (w *worker) do() (int, error) {
	if c := w.g.client; c != nil {
		return c.Do(w.id, w.g.timeout)
	}
	err := w.g.hc.DoTimeout(w.req, w.resp, w.g.timeout)
	if err == nil && w.resp.IsBodyStream() {
		// HTTP1Stream: the body, read to its end, is part of the request.
		if w.buf == nil {
			w.buf = make([]byte, 64<<10)
		}
		_, err = io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{w.resp.BodyStream()}, w.buf)
		if cerr := w.resp.CloseBodyStream(); err == nil {
			err = cerr
		}
	}
	return w.resp.StatusCode(), err
}

func (w *worker) record(measured bool, code int, err error, intended, sent, finished time.Time) {
	w.done.Add(1)
	if err != nil {
		w.errCount.Add(1)
	}
	if !measured {
		w.warm++
		return
	}
	if err != nil || code < 200 || code >= 300 {
		if w.firstFail.IsZero() {
			w.firstFail = finished
		}
		w.lastFail = finished
	}
	if err != nil {
		classify(&w.errs, err)
		return
	}
	w.measured++
	switch {
	case code >= 100 && code < 200:
		w.status.C1xx++
	case code >= 200 && code < 300:
		w.status.C2xx++
	case code >= 300 && code < 400:
		w.status.C3xx++
	case code >= 400 && code < 500:
		w.status.C4xx++
	case code >= 500 && code < 600:
		w.status.C5xx++
	default:
		w.status.Other++
	}
	_ = w.latency.RecordValue(micros(finished.Sub(intended)))
	if w.service != w.latency {
		_ = w.service.RecordValue(micros(finished.Sub(sent)))
	}
}

// micros rounds d up to whole microseconds, clamped to the histogram's range.
func micros(d time.Duration) int64 {
	us := (int64(d) + 999) / 1000
	if us < 1 {
		return 1
	}
	if us > HistogramMaxMicros {
		return HistogramMaxMicros
	}
	return us
}

func classify(c *ErrorCounts, err error) {
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.As(err, &timeout) && timeout.Timeout():
		c.Timeout++
	case isRefused(err):
		c.Refused++
	case isReset(err):
		c.Reset++
	default:
		c.Other++
	}
}
