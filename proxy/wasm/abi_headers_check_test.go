package wasm

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/filter"
)

// TestFilterHeaderWritesAreValidated: a filter's malformed header write is
// refused (never reaches the message), fails the filter under its policy
// and is counted; a well-formed one applies.
func TestFilterHeaderWritesAreValidated(t *testing.T) {
	rt := newRuntime(t)
	cases := []struct {
		name, config string
		ok           bool
	}{
		{"header", "ax-ok\x00fine", true},
		{"value with tab and obs-text", "ax-ok\x00a\tb\xe9", true},
		{"path", "r:path\x00/a?b=c", true},
		{"method", "r:method\x00PURGE", true},
		{"authority", "r:authority\x00svc.local:8080", true},
		{"host", "rhost\x00[::1]:80", true},
		{"response header", "Rx-ok\x00fine", true},
		{"CR LF in a value", "ax-bad\x00a\r\nx-injected: 1", false},
		{"LF in a value", "ax-bad\x00a\nb", false},
		{"NUL in a value", "ax-bad\x00a\x00b", false},
		{"DEL in a value", "ax-bad\x00a\x7fb", false},
		{"space in a name", "ax bad\x00v", false},
		{"colon in a name", "ax:bad\x00v", false},
		{"empty name", "a\x00v", false},
		{"space in :method", "r:method\x00GET /evil HTTP/1.1", false},
		{"empty :method", "r:method\x00", false},
		{"space in :path", "r:path\x00/a b", false},
		{"CR in :path", "r:path\x00/a\rb", false},
		{"absolute :path", "r:path\x00http://evil/", false},
		{"userinfo in :authority", "r:authority\x00u@evil", false},
		{"space in host", "rhost\x00a b", false},
		{"bad :scheme", "r:scheme\x00javascript", false},
		{"CR LF in a response value", "Rx-bad\x00a\r\nSet-Cookie: s=1", false},
	}
	for _, failOpen := range []bool{false, true} {
		for _, c := range cases {
			name := c.name + map[bool]string{false: "/fail_closed", true: "/fail_open"}[failOpen]
			t.Run(name, func(t *testing.T) {
				p := load(t, rt, PluginSpec{Name: t.Name(), Module: wat(t, "setpair"), PluginConfig: []byte(c.config), FailOpen: failOpen}, Env{})
				s := newStream("/orig", "x-in", "1")
				o := runStream(p, s)
				bad := p.events.n[eventInvalidHeader].Load()
				wire := s.Request.Header.String() + s.Response.Header.String()
				if c.ok {
					if o.req != filter.Continue || o.resp != filter.Continue || bad != 0 {
						t.Fatalf("a valid write: %v/%v, invalid_header %d", o.req, o.resp, bad)
					}
					return
				}
				if bad != 1 {
					t.Fatalf("invalid_header = %d, want 1", bad)
				}
				for _, leak := range []string{"x-bad", "X-Bad", "injected", "evil", "Set-Cookie", "javascript", "a b"} {
					if strings.Contains(wire, leak) {
						t.Fatalf("the refused write reached the message:\n%s", wire)
					}
				}
				if failOpen {
					if o.req != filter.Continue || o.resp != filter.Continue || !o.upstream || p.events.n[eventFailOpen].Load() != 1 {
						t.Fatalf("fail_open: %v/%v upstream %v, fail_open events %d", o.req, o.resp, o.upstream, p.events.n[eventFailOpen].Load())
					}
					return
				}
				if p.events.n[eventFailClosed].Load() != 1 || s.Response.StatusCode() != 503 {
					t.Fatalf("fail_closed: status %d, fail_closed events %d", s.Response.StatusCode(), p.events.n[eventFailClosed].Load())
				}
				if c.config[0] != 'R' && (o.req != filter.LocalReply || o.upstream) {
					t.Fatalf("fail_closed: the request went on (%v, upstream %v)", o.req, o.upstream)
				}
			})
		}
	}
}

// A local reply whose headers are malformed is refused and fails the
// filter: the client gets the policy's answer, not the injected header.
func TestFilterLocalReplyHeadersAreValidated(t *testing.T) {
	rt := newRuntime(t)
	m := serializeMap(nil, [][2][]byte{{[]byte("x-reason"), []byte("a\r\nSet-Cookie: s=1")}})
	p := load(t, rt, PluginSpec{Name: "local", Module: wat(t, "local"), PluginConfig: m}, Env{})
	s := newStream("/")
	o := runStream(p, s)
	if o.upstream || s.Response.StatusCode() != 503 || p.events.n[eventInvalidHeader].Load() != 1 {
		t.Fatalf("upstream %v, status %d, invalid_header %d", o.upstream, s.Response.StatusCode(), p.events.n[eventInvalidHeader].Load())
	}
	if strings.Contains(s.Response.Header.String(), "Set-Cookie") {
		t.Fatalf("the refused header reached the response:\n%s", s.Response.Header.String())
	}
}
