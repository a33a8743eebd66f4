package jsonscan

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"testing"
)

// FuzzParseObject checks the scanner against encoding/json: it accepts
// exactly the valid JSON objects, and finds the same members (last one wins
// for a repeated name) with the same values.
func FuzzParseObject(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { } `, `{"a":1}`, `{"a":"x","b":[1,2,{"c":null}],"d":true,"e":false,"f":-0.5e+3}`,
		`{"a\u0041":"\n\"\\/"}`, `{"a":1,"a":2}`, `{"aud":["x","y"],"exp":1e12}`, `{"a":01}`, `{"a":1,}`,
		`{"a" 1}`, `{"a":tru}`, `[1]`, `null`, `{"a":"\x01"}`, `{"a":1} x`, `{"a":"\ud800"}`, `{"a":[1,]}`,
		`{"a":.5}`, `{"a":1.}`, `{"a":-}`, `{"a":"\u12"}`, "{\"a\":\"\xff\"}", `{"a":{"b":{"c":[[[]]]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, ok := Object(b, nil)
		var want map[string]json.RawMessage
		err := json.Unmarshal(b, &want)
		valid := json.Valid(b) && err == nil && want != nil
		if bytes.Count(b, []byte("[")) > MaxDepth || bytes.Count(b, []byte("{")) > MaxDepth {
			if ok && !valid {
				t.Fatalf("accepted invalid %q", b)
			}
			return // deep nesting may be refused
		}
		if ok != valid {
			t.Fatalf("Object(%q) ok=%v, encoding/json valid=%v (%v)", b, ok, valid, err)
		}
		if !ok {
			return
		}
		for name, raw := range want {
			got, found := Lookup(ms, name)
			if !found || !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(raw)) {
				t.Fatalf("%q: member %q = %q, encoding/json %q", b, name, got, raw)
			}
			var ws, gs string
			if json.Unmarshal(raw, &ws) == nil {
				if gs, found = String(got); !found || gs != ws {
					t.Fatalf("%q: string %q decoded %q, encoding/json %q", b, name, gs, ws)
				}
			}
		}
		if len(want) > len(ms) {
			t.Fatalf("%q: %d members, encoding/json %d", b, len(ms), len(want))
		}
	})
}

// FuzzNumericDate checks NumericDate against strconv on what it is given
// in use, a valid JSON value from Object: every number within ±MaxSeconds
// is read (to the nanosecond), nothing else is read.
func FuzzNumericDate(f *testing.F) {
	for _, s := range []string{"0", "1700000000", "-1", "1.5", "1e15", "1e16", "-1e15", "999999999999999", "1234567890123456",
		"NaN", "Infinity", "", "-", "+1", "01", "1e", "\"1\"", "true", "1.7e9"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		got, ok := NumericDate(raw)
		var num json.Number
		isNumber := json.Unmarshal(raw, &num) == nil && len(raw) > 0 && raw[0] != '"'
		v, err := strconv.ParseFloat(string(raw), 64)
		want := isNumber && err == nil && v <= MaxSeconds && v >= -MaxSeconds
		if ok != want {
			t.Fatalf("NumericDate(%q) ok=%v, want %v", raw, ok, want)
		}
		// To the nanosecond (fractions below it are dropped), within
		// float64's precision.
		if g := float64(got.Unix()) + float64(got.Nanosecond())/1e9; ok && math.Abs(g-v) > 1e-6+math.Abs(v)*1e-15 {
			t.Fatalf("NumericDate(%q) = %v s, want %v", raw, g, v)
		}
	})
}
