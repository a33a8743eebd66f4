package main

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseConfig: a config is accepted (within the documented bounds) or
// refused with an error, never both or neither.
func FuzzParseConfig(f *testing.F) {
	for _, raw := range []string{
		`{}`, `{"delay":{"percent":120,"duration":"1s"}}`, `{"delay":{"percent":10,"duration":"0s"}}`,
		`{"delay":{"percent":10,"duration":"1m"}}`, `{"abort":{"percent":10,"status":99}}`,
		`{"abort":{"percent":-1,"status":503}}`, `{"abort":{"percent":1,"status":503},"headers":[{"value":"x"}]}`,
		`{"abort":{"percent":1,"status":503},"bogus":1}`, `{"delay":{"percent":1,"duration":5}}`,
		`{"delay":{"percent":25,"duration":"200ms"},"abort":{"percent":10,"status":503},"headers":[{"name":"X-Fault"}]}`,
		`{"abort":{"percent":100,"status":599,"body":"x"}}`, ``, `null`,
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
		if c.Delay == nil && c.Abort == nil {
			t.Fatalf("parseConfig(%q) accepted a config with no fault", raw)
		}
		if d := c.Delay; d != nil && (d.Percent < 0 || d.Percent > 100 || d.Duration <= 0 || time.Duration(d.Duration) > maxDelay) {
			t.Fatalf("parseConfig(%q) accepted delay %+v", raw, *d)
		}
		if a := c.Abort; a != nil && (a.Percent < 0 || a.Percent > 100 || a.Status < 200 || a.Status > 599) {
			t.Fatalf("parseConfig(%q) accepted abort %+v", raw, *a)
		}
		for _, h := range c.Headers {
			if h.Name == "" || h.Name != strings.ToLower(h.Name) {
				t.Fatalf("parseConfig(%q) kept header name %q", raw, h.Name)
			}
		}
		if p := c.tickPeriod(); c.Delay != nil && (p < 5*time.Millisecond || p > 100*time.Millisecond) {
			t.Fatalf("tick period %v", p)
		}
		if d := c.decide(100, 100); d.abort || d.delay != 0 {
			t.Fatalf("a draw of 100 faulted: %+v", d)
		}
	})
}
