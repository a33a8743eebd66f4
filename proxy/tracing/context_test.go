package tracing

import (
	"bytes"
	"testing"
)

func TestParseTraceparent(t *testing.T) {
	good := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	c, ok := ParseTraceparent([]byte(good))
	if !ok || !c.Sampled || !c.HasDecision {
		t.Fatalf("valid traceparent: ok=%v %+v", ok, c)
	}
	if got := string(AppendTraceparent(nil, &c)); got != good {
		t.Fatalf("round trip: %s", got)
	}
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true}, // future version
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"", false},
	} {
		if _, ok := ParseTraceparent([]byte(tc.v)); ok != tc.ok {
			t.Errorf("%q: ok=%v, want %v", tc.v, ok, tc.ok)
		}
	}
	c, _ = ParseTraceparent([]byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02"))
	if c.Sampled {
		t.Error("flags 02 has the sampled bit clear")
	}
}

func TestParseB3(t *testing.T) {
	c, ids, ok := ParseB3([]byte("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"))
	if !ok || !ids || !c.Sampled || c.TraceID[0] != 0x80 || c.SpanID[7] != 0xd1 {
		t.Fatalf("full b3: %v %v %+v", ok, ids, c)
	}
	c, ids, ok = ParseB3([]byte("64fe8b2a57d3eff7-e457b5a2e4d86bd1-d"))
	if !ok || !ids || !c.Debug || !c.Sampled || c.TraceID[0] != 0 || c.TraceID[8] != 0x64 {
		t.Fatalf("64-bit debug b3: %v %v %+v", ok, ids, c)
	}
	c, ids, ok = ParseB3([]byte("64fe8b2a57d3eff7-e457b5a2e4d86bd1"))
	if !ok || !ids || c.HasDecision {
		t.Fatalf("b3 without decision: %v %v %+v", ok, ids, c)
	}
	c, ids, ok = ParseB3([]byte("0"))
	if !ok || ids || c.Sampled || !c.HasDecision {
		t.Fatalf("b3: 0: %v %v %+v", ok, ids, c)
	}
	for _, bad := range []string{"x", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-2", "64fe8b2a57d3eff-e457b5a2e4d86bd1-1",
		"64fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3", "0000000000000000-e457b5a2e4d86bd1-1", "64fe8b2a57d3eff7-zz57b5a2e4d86bd1"} {
		if _, _, ok := ParseB3([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	var parent [8]byte
	parent[7] = 9
	c, _, _ = ParseB3([]byte("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"))
	if got := string(AppendB3(nil, &c, &parent, false)); got != "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-0000000000000009" {
		t.Fatalf("AppendB3: %s", got)
	}
	if got := string(AppendB3(nil, &c, nil, true)); got != "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1" {
		t.Fatalf("AppendB3 short: %s", got)
	}
}

func TestParseB3Multi(t *testing.T) {
	c, ids, ok := ParseB3Multi([]byte("463ac35c9f6413ad48485a3953bb6124"), []byte("a2fb4a1d1a96d312"), []byte("1"), nil)
	if !ok || !ids || !c.Sampled {
		t.Fatalf("multi: %v %v %+v", ok, ids, c)
	}
	c, ids, ok = ParseB3Multi(nil, nil, nil, []byte("1"))
	if !ok || ids || !c.Debug || !c.Sampled {
		t.Fatalf("flags alone: %v %v %+v", ok, ids, c)
	}
	if _, _, ok := ParseB3Multi([]byte("463ac35c9f6413ad"), nil, nil, nil); ok {
		t.Error("trace id without span id parsed")
	}
	if _, _, ok := ParseB3Multi(nil, nil, []byte("yes"), nil); ok {
		t.Error("bad sampled parsed")
	}
}

// FuzzTraceparent: the parser never panics, and whatever it accepts it
// writes back as an equivalent version-00 header that parses to the same
// context.
func FuzzTraceparent(f *testing.F) {
	for _, s := range []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-holds",
		"00-00000000000000000000000000000000-0000000000000000-01", "", "00-",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		c, ok := ParseTraceparent(v)
		if !ok {
			return
		}
		if !c.IsValid() {
			t.Fatalf("accepted zero ids: %q", v)
		}
		out := AppendTraceparent(nil, &c)
		c2, ok := ParseTraceparent(out)
		if !ok || c2 != c {
			t.Fatalf("%q → %q → %+v, want %+v", v, out, c2, c)
		}
		if len(v) == TraceparentLen && v[0] == '0' && v[1] == '0' && !bytes.Equal(out[:52], v[:52]) {
			t.Fatalf("ids changed: %q → %q", v, out)
		}
	})
}

// FuzzB3: the single and multi header parsers never panic, and an
// accepted full context survives AppendB3 and parses back the same.
func FuzzB3(f *testing.F) {
	for _, s := range []string{
		"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
		"64fe8b2a57d3eff7-e457b5a2e4d86bd1-d", "64fe8b2a57d3eff7-e457b5a2e4d86bd1", "0", "1", "d", "-", "--1-",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		c, ids, ok := ParseB3(v)
		if ok && ids {
			out := AppendB3(nil, &c, nil, false)
			c2, ids2, ok2 := ParseB3(out)
			c.HasDecision, c2.HasDecision = true, true // AppendB3 always writes a decision
			if !c.Debug {
				c2.Sampled = c.Sampled
			}
			if !ok2 || !ids2 || c2.TraceID != c.TraceID || c2.SpanID != c.SpanID {
				t.Fatalf("%q → %q → %+v", v, out, c2)
			}
		}
		// The same bytes as each multi header must not panic either.
		_, _, _ = ParseB3Multi(v, v, v, v)
		h := len(v) / 2
		_, _, _ = ParseB3Multi(v[:h], v[h:], nil, nil)
	})
}
