package main

import (
	"bytes"
	"encoding/json"
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
		ms, ok := parseObject(b, nil)
		var want map[string]json.RawMessage
		err := json.Unmarshal(b, &want)
		valid := json.Valid(b) && err == nil && want != nil
		if bytes.Count(b, []byte("[")) > maxJSONDepth || bytes.Count(b, []byte("{")) > maxJSONDepth {
			if ok && !valid {
				t.Fatalf("accepted invalid %q", b)
			}
			return // deep nesting may be refused
		}
		if ok != valid {
			t.Fatalf("parseObject(%q) ok=%v, encoding/json valid=%v (%v)", b, ok, valid, err)
		}
		if !ok {
			return
		}
		c := claims(ms)
		for name, raw := range want {
			got, found := c.get(name)
			if !found || !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(raw)) {
				t.Fatalf("%q: member %q = %q, encoding/json %q", b, name, got, raw)
			}
			var ws, gs string
			if json.Unmarshal(raw, &ws) == nil {
				if gs, found = rawString(got); !found || gs != ws {
					t.Fatalf("%q: string %q decoded %q, encoding/json %q", b, name, gs, ws)
				}
			}
		}
		if len(want) > len(ms) {
			t.Fatalf("%q: %d members, encoding/json %d", b, len(ms), len(want))
		}
	})
}
