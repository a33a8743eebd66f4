//go:build !wasip1

package sdktest

import (
	"strconv"
	"strings"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// Message is one side of an exchange: headers (pseudo-headers included,
// lower-case names), body, trailers.
type Message struct {
	Headers  [][2]string
	Body     []byte
	Trailers [][2]string
}

// Header returns the first value of name.
func (m *Message) Header(name string) (string, bool) { return get(m.Headers, name) }

// LocalResponse is what the filter sent with SendLocalResponse.
type LocalResponse struct {
	Status  int
	Details string
	Body    []byte
	Headers [][2]string
}

// Header returns the first value of name.
func (l *LocalResponse) Header(name string) (string, bool) { return get(l.Headers, name) }

// Stream is one emulated HTTP stream.
type Stream struct {
	h  *Host
	id uint32
	// Request and Response are the messages as the filter left them.
	Request, Response Message
	// Local is the local response the filter sent, if any.
	Local *LocalResponse
	// Resumes counts proxy_continue_stream calls.
	Resumes int
	// Closed is set by proxy_close_stream.
	Closed bool

	props     map[string][]byte
	responded bool
	deleted   bool
	pausedAt  int // step to continue from, 0 when not paused
	upstream  func(req *Message) (int, [][2]string, []byte)
}

// Req describes a request for NewStream.
type Req struct {
	Method, Path, Authority string // defaults GET, /, example.test
	Headers                 [][2]string
	Body                    []byte
}

// NewStream creates a stream context for r (the filter's NewHTTPFilter
// runs now).
func (h *Host) NewStream(r Req) *Stream {
	if r.Method == "" {
		r.Method = "GET"
	}
	if r.Path == "" {
		r.Path = "/"
	}
	if r.Authority == "" {
		r.Authority = "example.test"
	}
	s := &Stream{h: h, id: h.nextID, props: make(map[string][]byte)}
	h.nextID++
	s.Request.Headers = [][2]string{{":method", r.Method}, {":path", r.Path}, {":authority", r.Authority}, {":scheme", "http"}}
	for _, kv := range r.Headers {
		s.Request.Headers = append(s.Request.Headers, [2]string{strings.ToLower(kv[0]), kv[1]})
	}
	s.Request.Body = clone(r.Body)
	h.streams[s.id] = s
	h.effective = s.id
	abi.Exports.OnContextCreate(s.id, rootID)
	return s
}

// ID is the stream's context id.
func (s *Stream) ID() uint32 { return s.id }

func (s *Stream) enter() { s.h.effective = s.id }

// RequestHeaders runs OnRequestHeaders (end of stream when there is no body).
func (s *Stream) RequestHeaders() uint32 {
	s.enter()
	return abi.Exports.OnRequestHeaders(s.id, uint32(len(s.Request.Headers)), len(s.Request.Body) == 0)
}

// RequestBody runs OnRequestBody with the whole body.
func (s *Stream) RequestBody() uint32 {
	s.enter()
	return abi.Exports.OnRequestBody(s.id, uint32(len(s.Request.Body)), true)
}

// ResponseHeaders sets the upstream's response and runs OnResponseHeaders.
func (s *Stream) ResponseHeaders(status int, headers [][2]string, body []byte) uint32 {
	s.Response.Headers = append([][2]string{{":status", strconv.Itoa(status)}}, headers...)
	s.Response.Body = clone(body)
	s.responded = true
	s.enter()
	return abi.Exports.OnResponseHeaders(s.id, uint32(len(s.Response.Headers)), len(body) == 0)
}

// ResponseBody runs OnResponseBody with the whole body.
func (s *Stream) ResponseBody() uint32 {
	s.enter()
	return abi.Exports.OnResponseBody(s.id, uint32(len(s.Response.Body)), true)
}

// Finish runs OnLog, OnDone and deletes the stream.
func (s *Stream) Finish() {
	if s.deleted {
		return
	}
	s.enter()
	abi.Exports.OnLog(s.id)
	s.enter()
	abi.Exports.OnDone(s.id)
	abi.Exports.OnDelete(s.id)
	delete(s.h.streams, s.id)
	s.deleted = true
}

// Status is the response status the stream has (local reply or upstream),
// 0 before either.
func (s *Stream) Status() int {
	if s.Local != nil {
		return s.Local.Status
	}
	if v, ok := get(s.Response.Headers, ":status"); ok {
		n, _ := strconv.Atoi(v)
		return n
	}
	return 0
}

// Forwarded reports whether the request went to the upstream in Run.
func (s *Stream) Forwarded() bool { return s.responded }

// property answers the stream's own properties from its messages.
func (s *Stream) property(key string) ([]byte, bool) {
	switch key {
	case "request.path":
		v, ok := get(s.Request.Headers, ":path")
		return []byte(v), ok
	case "request.url_path":
		v, ok := get(s.Request.Headers, ":path")
		v, _, _ = strings.Cut(v, "?")
		return []byte(v), ok
	case "request.method":
		v, ok := get(s.Request.Headers, ":method")
		return []byte(v), ok
	case "request.host":
		v, ok := get(s.Request.Headers, ":authority")
		return []byte(v), ok
	case "request.size":
		return i64(int64(len(s.Request.Body))), true
	case "response.code":
		st := s.Status()
		return i64(int64(st)), st != 0
	case "response.size":
		return i64(int64(len(s.Response.Body))), s.responded
	}
	if name, ok := strings.CutPrefix(key, "request.headers."); ok {
		v, ok := get(s.Request.Headers, name)
		return []byte(v), ok
	}
	return nil, false
}

// Run drives the whole exchange the way the proxy does: request headers,
// request body, then (unless the filter paused or answered locally) the
// upstream's answer from upstream, response headers and body, log and done.
// A Pause that no callback resumed ends the run early: the test then
// delivers call-outs or ticks and calls Continue.
func (s *Stream) Run(upstream func(req *Message) (int, [][2]string, []byte)) {
	s.run(upstream, 0)
}

// Paused reports whether the stream waits for a Resume.
func (s *Stream) Paused() bool { return s.pausedAt != 0 }

func (s *Stream) run(upstream func(req *Message) (int, [][2]string, []byte), from int) {
	steps := []func() uint32{
		s.RequestHeaders,
		func() uint32 {
			if len(s.Request.Body) == 0 {
				return 0
			}
			return s.RequestBody()
		},
		func() uint32 {
			if s.Local != nil {
				s.Response.Headers = append([][2]string{{":status", strconv.Itoa(s.Local.Status)}}, s.Local.Headers...)
				s.Response.Body = s.Local.Body
				s.enter()
				return abi.Exports.OnResponseHeaders(s.id, uint32(len(s.Response.Headers)), len(s.Response.Body) == 0)
			}
			st, hs, b := 200, [][2]string(nil), []byte(nil)
			if upstream != nil {
				st, hs, b = upstream(&s.Request)
			}
			return s.ResponseHeaders(st, hs, b)
		},
		func() uint32 {
			if len(s.Response.Body) == 0 {
				return 0
			}
			return s.ResponseBody()
		},
	}
	for i := from; i < len(steps); i++ {
		resumes := s.Resumes
		a := steps[i]()
		if a == 1 && s.Local == nil && s.Resumes == resumes && !s.Closed {
			s.pausedAt = i + 1
			s.upstream = upstream
			return
		}
		if s.Local != nil && i < 2 {
			i = 1 // skip to the response of the local reply
		}
	}
	s.pausedAt = 0
	s.Finish()
}

// Continue resumes a Run that paused, after the filter called Resume (or
// sent a local response).
func (s *Stream) Continue() {
	if s.pausedAt == 0 {
		return
	}
	from := s.pausedAt
	if s.Local != nil && from <= 2 {
		from = 2
	}
	s.pausedAt = 0
	s.run(s.upstream, from)
}
