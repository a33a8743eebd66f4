package filter

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// rec is a filter that records its callbacks in a shared log and answers
// what its script says for a callback (Continue otherwise).
type rec struct {
	name   string
	log    *[]string
	answer map[string]Status
}

func (r *rec) note(cb string, s *Stream, extra string) Status {
	*r.log = append(*r.log, r.name+"."+cb+extra)
	return r.answer[cb]
}

func (r *rec) OnRequestHeaders(s *Stream, end bool) Status {
	return r.note("reqh", s, fmt.Sprintf("(%v)", end))
}
func (r *rec) OnRequestBody(s *Stream, end bool) Status {
	return r.note("reqb", s, fmt.Sprintf("(%s,%v)", s.Request.Body(), end))
}
func (r *rec) OnRequestTrailers(s *Stream) Status { return r.note("reqt", s, "") }
func (r *rec) OnResponseHeaders(s *Stream, end bool) Status {
	return r.note("resph", s, fmt.Sprintf("(%v)", end))
}
func (r *rec) OnResponseBody(s *Stream, end bool) Status {
	return r.note("respb", s, fmt.Sprintf("(%s,%v)", s.Response.Body(), end))
}
func (r *rec) OnResponseTrailers(s *Stream) Status { return r.note("respt", s, "") }
func (r *rec) OnLog(s *Stream)                     { r.note("log", s, "") }
func (r *rec) OnDone(s *Stream)                    { r.note("done", s, "") }

// factory makes f (nil: the factory has no filter for the stream).
type factory struct{ f StreamFilter }

func (factory) Name() string                           { return "f" }
func (f factory) NewStreamFilter(*Stream) StreamFilter { return f.f }

func newStream(reqBody, respBody string) *Stream {
	s := &Stream{Request: &fasthttp.Request{}, Response: &fasthttp.Response{}}
	s.Request.SetBodyString(reqBody)
	s.Response.SetBodyString(respBody)
	return s
}

// build adds n recording filters f0..f(n-1), with a factory that makes no
// filter between each, and returns the chain and the shared log.
func build(n int, answers map[string]map[string]Status) (*Chain, *[]string) {
	var c Chain
	log := &[]string{}
	s := newStream("", "")
	for i := range n {
		name := fmt.Sprintf("f%d", i)
		c.Add(factory{&rec{name: name, log: log, answer: answers[name]}}, s)
		c.Add(factory{nil}, s)
	}
	return &c, log
}

func split(s string) []string { return strings.Fields(s) }

// TestChainOrder: request callbacks run first to last (every filter's
// headers, then every body), response callbacks last to first for the
// filters that saw the request, OnLog then OnDone for every filter; past
// the eight inline slots the order holds; a factory with no filter adds
// nothing.
func TestChainOrder(t *testing.T) {
	c, log := build(10, nil)
	if c.Len() != 10 {
		t.Fatalf("Len %d, want 10 (factories with no filter add none)", c.Len())
	}
	s := newStream("q", "r")
	if st := c.DecodeFrom(s, 0); st != Continue {
		t.Fatalf("DecodeFrom: %v", st)
	}
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("f%d.reqh(false)", i))
	}
	for i := range 10 {
		want = append(want, fmt.Sprintf("f%d.reqb(q,true)", i))
	}
	if !reflect.DeepEqual(*log, want) {
		t.Fatalf("request path:\n got %v\nwant %v", *log, want)
	}
	*log = nil
	want = nil
	c.Encode(s)
	c.Finish(s)
	for i := 9; i >= 0; i-- {
		want = append(want, fmt.Sprintf("f%d.resph(false)", i))
	}
	for i := 9; i >= 0; i-- {
		want = append(want, fmt.Sprintf("f%d.respb(r,true)", i))
	}
	for i := range 10 {
		want = append(want, fmt.Sprintf("f%d.log", i))
	}
	for i := range 10 {
		want = append(want, fmt.Sprintf("f%d.done", i))
	}
	if !reflect.DeepEqual(*log, want) {
		t.Fatalf("response path:\n got %v\nwant %v", *log, want)
	}

	// No body: headers carry endOfStream, no body callbacks.
	c.Reset()
	if c.Len() != 0 {
		t.Fatalf("Len %d after Reset", c.Len())
	}
	c, log = build(2, nil)
	s = newStream("", "")
	c.DecodeFrom(s, 0)
	c.Encode(s)
	if want := split("f0.reqh(true) f1.reqh(true) f1.resph(true) f0.resph(true)"); !reflect.DeepEqual(*log, want) {
		t.Fatalf("no bodies:\n got %v\nwant %v", *log, want)
	}
}

// TestChainLocalReply: a LocalReply ends the request path; the response
// path runs for the filters that saw the request only, and OnLog and
// OnDone still run for every filter.
func TestChainLocalReply(t *testing.T) {
	c, log := build(4, map[string]map[string]Status{"f1": {"reqh": LocalReply}})
	s := newStream("", "")
	if st := c.DecodeFrom(s, 0); st != LocalReply {
		t.Fatalf("DecodeFrom: %v, want LocalReply", st)
	}
	c.Encode(s)
	c.Finish(s)
	want := split("f0.reqh(true) f1.reqh(true) f1.resph(true) f0.resph(true) f0.log f1.log f2.log f3.log f0.done f1.done f2.done f3.done")
	if !reflect.DeepEqual(*log, want) {
		t.Fatalf("\n got %v\nwant %v", *log, want)
	}

	// A LocalReply from a body callback, and from a response callback.
	c, log = build(3, map[string]map[string]Status{"f1": {"reqb": LocalReply}, "f2": {"resph": LocalReply}})
	s = newStream("q", "r")
	if st := c.DecodeFrom(s, 0); st != LocalReply {
		t.Fatalf("DecodeFrom: %v, want LocalReply", st)
	}
	if st := c.Encode(s); st != LocalReply {
		t.Fatalf("Encode: %v, want LocalReply", st)
	}
	want = split("f0.reqh(false) f1.reqh(false) f2.reqh(false) f0.reqb(q,true) f1.reqb(q,true) f2.resph(false)")
	if !reflect.DeepEqual(*log, want) {
		t.Fatalf("\n got %v\nwant %v", *log, want)
	}
}

// TestChainStopAndBuffer: a filter that answers StopAndBuffer on a chunk
// gets it again with the next chunk appended, while the filters before it
// see each chunk alone; on the last chunk StopAndBuffer lets it through.
func TestChainStopAndBuffer(t *testing.T) {
	for _, response := range []bool{false, true} {
		cb := map[bool]string{false: "reqb", true: "respb"}[response]
		// f1 buffers; for the response path the order is f2, f1, f0.
		c, log := build(3, map[string]map[string]Status{"f1": {cb: StopAndBuffer}})
		s := newStream("", "")
		c.DecodeFrom(s, 0) // every filter sees the headers
		*log = nil
		data := func(chunk string, end bool) Status {
			if response {
				s.Response.SetBodyString(chunk)
				return c.EncodeData(s, end)
			}
			s.Request.SetBodyString(chunk)
			return c.DecodeData(s, end)
		}
		if st := data("a", false); st != StopAndBuffer || !c.Buffered(response) || c.Buffered(!response) {
			t.Fatalf("%s: first chunk: %v, buffered %v/%v", cb, st, c.Buffered(response), c.Buffered(!response))
		}
		if st := data("b", false); st != StopAndBuffer {
			t.Fatalf("%s: second chunk: %v", cb, st)
		}
		if st := data("c", true); st != Continue || c.Buffered(response) {
			t.Fatalf("%s: last chunk: %v, buffered %v", cb, st, c.Buffered(response))
		}
		first, last := "f0", "f2"
		if response {
			first, last = "f2", "f0"
		}
		want := split(fmt.Sprintf("%[1]s.%[3]s(a,false) f1.%[3]s(a,false) %[1]s.%[3]s(b,false) f1.%[3]s(ab,false) %[1]s.%[3]s(c,true) f1.%[3]s(abc,true) %[2]s.%[3]s(abc,true)", first, last, cb))
		if !reflect.DeepEqual(*log, want) {
			t.Fatalf("%s:\n got %v\nwant %v", cb, *log, want)
		}
	}
}

// TestChainTrailers: request trailers first to last, response trailers
// last to first, a LocalReply stops them.
func TestChainTrailers(t *testing.T) {
	c, log := build(3, map[string]map[string]Status{"f1": {"respt": LocalReply}})
	s := newStream("", "")
	c.DecodeFrom(s, 0)
	*log = nil
	if st := c.DecodeTrailers(s); st != Continue {
		t.Fatalf("DecodeTrailers: %v", st)
	}
	if st := c.EncodeTrailers(s); st != LocalReply {
		t.Fatalf("EncodeTrailers: %v, want LocalReply", st)
	}
	if want := split("f0.reqt f1.reqt f2.reqt f2.respt f1.respt"); !reflect.DeepEqual(*log, want) {
		t.Fatalf("\n got %v\nwant %v", *log, want)
	}
}

// combiner is a rec that takes a whole response in one call.
type combiner struct{ rec }

func (c *combiner) OnResponse(s *Stream) Status {
	return c.note("resp", s, fmt.Sprintf("(%s)", s.Response.Body()))
}

// TestChainOnResponse: a ResponseCombiner gets a response's headers and
// body in one call only when it is the one filter that saw the request
// and the body is there; with two filters each gets the two callbacks
// (every filter's headers before any body), and without a body the
// headers callback alone.
func TestChainOnResponse(t *testing.T) {
	run := func(n int, respBody string, from int) []string {
		var c Chain
		log := &[]string{}
		s := newStream("", respBody)
		for i := range n {
			c.Add(factory{&combiner{rec{name: fmt.Sprintf("f%d", i), log: log}}}, s)
		}
		c.DecodeFrom(s, from)
		*log = nil
		if st := c.Encode(s); st != Continue {
			t.Errorf("Encode: %v", st)
		}
		return *log
	}
	if got, want := run(1, "r", 0), split("f0.resp(r)"); !reflect.DeepEqual(got, want) {
		t.Errorf("one filter:\n got %v\nwant %v", got, want)
	}
	if got, want := run(2, "r", 0), split("f1.resph(false) f0.resph(false) f1.respb(r,true) f0.respb(r,true)"); !reflect.DeepEqual(got, want) {
		t.Errorf("two filters:\n got %v\nwant %v", got, want)
	}
	if got, want := run(1, "", 0), split("f0.resph(true)"); !reflect.DeepEqual(got, want) {
		t.Errorf("no body:\n got %v\nwant %v", got, want)
	}

	// The combiner's answer is the chain's.
	var c Chain
	log := &[]string{}
	s := newStream("", "r")
	c.Add(factory{&combiner{rec{name: "f0", log: log, answer: map[string]Status{"resp": LocalReply}}}}, s)
	c.DecodeFrom(s, 0)
	if st := c.Encode(s); st != LocalReply {
		t.Errorf("Encode after a combiner's LocalReply: %v", st)
	}
}
