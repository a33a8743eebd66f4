package main

import (
	"strings"
	"testing"
)

// FuzzParseConfig: a config is accepted (within the documented bounds,
// defaults applied) or refused with an error, never both or neither.
func FuzzParseConfig(f *testing.F) {
	for _, raw := range []string{
		`{"sample_rate":2}`, `{"max_routes":-1}`, `{"log_headers":[""]}`, `{"nope":1}`, ``, `{}`,
		`{"max_routes":2}`, `{"sample_rate":1,"log_headers":["user-agent","x-request-id"]}`,
		`{"log_errors":true,"status_classes":true}`, `{"prefix":"svc","sample_rate":0.5}`, `  `, `null`,
	} {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := parseConfig(raw)
		if (c == nil) == (err == nil) {
			t.Fatalf("parseConfig(%q) = %v, %v", raw, c, err)
		}
		if err != nil {
			return
		}
		if c.Prefix == "" || c.MaxRoutes < 1 || c.SampleRate < 0 || c.SampleRate > 1 {
			t.Fatalf("parseConfig(%q) accepted %+v", raw, *c)
		}
		for _, h := range c.LogHeaders {
			if h == "" || h != strings.ToLower(h) {
				t.Fatalf("parseConfig(%q) kept log header %q", raw, h)
			}
		}
		_ = c.statusLabel(503)
		_ = c.requestsName("r", "503")
	})
}
