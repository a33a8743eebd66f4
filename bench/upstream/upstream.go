package upstream

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// MaxBodySize bounds a body asked for with ?size=N.
const MaxBodySize = 1 << 20

// DefaultBodySize is the body length when Config.BodySize is zero.
const DefaultBodySize = 64

// Config describes the upstream's behaviour.
type Config struct {
	// Addr to listen on; "127.0.0.1:0" when empty.
	Addr string
	// BodySize is the default response body length in bytes (DefaultBodySize
	// when zero, none when negative). A request may ask for another length
	// with the query parameter size=N (at most MaxBodySize).
	BodySize int
	// Delay holds every response for this long.
	Delay time.Duration
	// FailRate is the share of requests (0..1) answered 503, spread evenly:
	// 0.1 fails every tenth request.
	FailRate float64
	// StallAfter and StallFor make the upstream stall once: every request
	// that arrives during [first request + StallAfter, + StallFor) is held
	// until that window ends. Zero StallFor disables it.
	StallAfter time.Duration
	StallFor   time.Duration
	// StreamRequests streams request bodies to the handler instead of
	// reading them whole first (fasthttp's StreamRequestBody), so that a
	// POST to ?sink may send a body of any length (uploads). Off by
	// default: the request scenarios keep fasthttp's ordinary server.
	StreamRequests bool
}

// Server is a running upstream.
type Server struct {
	cfg      Config
	ln       net.Listener
	srv      *fasthttp.Server
	body     []byte
	bodySize int
	firstReq atomic.Int64 // unix ns of the first request, 0 before it
	requests atomic.Uint64
	failures atomic.Uint64
	served   chan error
	// now and sleep are time.Now and time.Sleep; the package's tests
	// replace them, so they check the holds the server asks for without
	// timing it.
	now   func() time.Time
	sleep func(time.Duration)
}

// Start listens on cfg.Addr and serves until Close.
func Start(cfg Config) (*Server, error) { return newServer(cfg, time.Now, time.Sleep) }

func newServer(cfg Config, now func() time.Time, sleep func(time.Duration)) (*Server, error) {
	if cfg.FailRate < 0 || cfg.FailRate > 1 {
		return nil, fmt.Errorf("upstream: fail rate %v: want 0..1", cfg.FailRate)
	}
	if cfg.Delay < 0 || cfg.StallAfter < 0 || cfg.StallFor < 0 {
		return nil, fmt.Errorf("upstream: delay and stall must not be negative")
	}
	if cfg.BodySize > MaxBodySize {
		return nil, fmt.Errorf("upstream: body size %d: at most %d", cfg.BodySize, MaxBodySize)
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("upstream: listen %s: %w", addr, err)
	}
	s := &Server{cfg: cfg, ln: ln, served: make(chan error, 1), now: now, sleep: sleep}
	switch {
	case cfg.BodySize == 0:
		s.bodySize = DefaultBodySize
	case cfg.BodySize > 0:
		s.bodySize = cfg.BodySize
	}
	s.body = make([]byte, MaxBodySize)
	for i := range s.body {
		s.body[i] = 'a' + byte(i%26)
	}
	s.srv = &fasthttp.Server{
		Handler:               s.handle,
		Name:                  "weft-bench-upstream",
		NoDefaultServerHeader: true,
		ReadTimeout:           time.Minute,
		WriteTimeout:          time.Minute,
		IdleTimeout:           time.Minute,
		CloseOnShutdown:       true,
		StreamRequestBody:     cfg.StreamRequests,
	}
	go func() { s.served <- s.srv.Serve(ln) }()
	return s, nil
}

// Serve runs an upstream until ctx is done; ready (if set) is called with
// the listening address once it accepts connections.
func Serve(ctx context.Context, cfg Config, ready func(addr string)) error {
	s, err := Start(cfg)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(s.Addr())
	}
	select {
	case <-ctx.Done():
		return s.Close()
	case err := <-s.served:
		return fmt.Errorf("upstream %s: %w", s.Addr(), err)
	}
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is http://Addr/.
func (s *Server) URL() string { return "http://" + s.Addr() + "/" }

// Requests counts the requests received so far.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Failures counts the requests answered with an injected 503.
func (s *Server) Failures() uint64 { return s.failures.Load() }

// Close stops accepting, closes connections once their request is answered
// (at most 5 s) and returns when the server has stopped.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.ShutdownWithContext(ctx)
	<-s.served
	if err != nil {
		return fmt.Errorf("upstream %s: shutdown: %w", s.Addr(), err)
	}
	return nil
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	n := s.requests.Add(1)
	if s.cfg.StallFor > 0 {
		s.stall()
	}
	if s.cfg.Delay > 0 {
		s.sleep(s.cfg.Delay)
	}
	if s.cfg.FailRate > 0 && uint64(float64(n)*s.cfg.FailRate) != uint64(float64(n-1)*s.cfg.FailRate) {
		s.failures.Add(1)
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString("weft-bench upstream: injected failure\n")
		return
	}
	if ctx.QueryArgs().Has("sink") {
		// Uploads: read the request body to its end in large reads and
		// answer with the byte count.
		var n int64
		var err error
		if rs := ctx.RequestBodyStream(); rs != nil {
			n, err = sink(rs)
		} else {
			// Not streaming: fasthttp has read the body already.
			n = int64(len(ctx.PostBody()))
		}
		if err != nil {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			ctx.SetBodyString("sink: " + err.Error() + "\n")
			return
		}
		ctx.SetContentType("text/plain")
		ctx.SetBodyString(strconv.FormatInt(n, 10))
		return
	}
	if v := ctx.QueryArgs().Peek("stream"); len(v) > 0 {
		// A body of any length, written as it is read (downloads).
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n < 0 {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			ctx.SetBodyString("stream: want a byte count\n")
			return
		}
		ctx.SetContentType("application/octet-stream")
		ctx.SetBodyStream(&repeatReader{block: s.body, left: n}, int(n))
		return
	}
	size := s.bodySize
	if v := ctx.QueryArgs().Peek("size"); len(v) > 0 {
		n, err := strconv.Atoi(string(v)) // string(v) in a call argument does not allocate
		if err != nil || n < 0 || n > MaxBodySize {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			ctx.SetBodyString("size: want 0.." + strconv.Itoa(MaxBodySize) + "\n")
			return
		}
		size = n
	}
	ctx.SetContentType("text/plain")
	ctx.SetBody(s.body[:size])
}

// repeatReader reads left bytes of block, over and over.
type repeatReader struct {
	block []byte
	off   int
	left  int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := copy(p, r.block[r.off:])
	r.off = (r.off + n) % len(r.block)
	r.left -= int64(n)
	return n, nil
}

// WriteBlock is the most a streamed body (?stream=N) hands the connection
// in one write, and what a sink (?sink) reads at once: large, as a server
// sending a file would, so that the upstream's own syscalls are few.
const WriteBlock = 256 << 10

// WriteTo writes the rest in writes of up to WriteBlock bytes; fasthttp
// uses it for a body stream, so each goes to the socket as it is (its
// buffered writer passes a write larger than its buffer straight on).
func (r *repeatReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.left > 0 {
		n := min(int64(WriteBlock), r.left, int64(len(r.block)-r.off))
		m, err := w.Write(r.block[r.off : r.off+int(n)])
		total += int64(m)
		r.off = (r.off + m) % len(r.block)
		r.left -= int64(m)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// sink reads r to its end and returns how many bytes it had.
func sink(r io.Reader) (int64, error) {
	buf := make([]byte, WriteBlock)
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// stall holds a request that arrives inside the one-off stall window until
// the window ends.
func (s *Server) stall() {
	now := s.now().UnixNano()
	first := s.firstReq.Load()
	if first == 0 {
		if s.firstReq.CompareAndSwap(0, now) {
			first = now
		} else {
			first = s.firstReq.Load()
		}
	}
	from := first + int64(s.cfg.StallAfter)
	until := from + int64(s.cfg.StallFor)
	if now >= from && now < until {
		s.sleep(time.Duration(until - now))
	}
}
