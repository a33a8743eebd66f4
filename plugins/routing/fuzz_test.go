package main

import (
	"math/big"
	"strings"
	"testing"
)

// FuzzParseConfig: a config is accepted or refused with an error, never
// both or neither; an accepted one has valid versions and a split whose
// weights really add up to a positive int, and choosing a version for any
// request and draw never panics and picks a configured version.
func FuzzParseConfig(f *testing.F) {
	for _, raw := range []string{
		canary, `{}`, `{"default":"v1"}`, `{"default":"a b"}`, `{"rules":[{"version":"v1"}]}`,
		`{"rules":[{"header":{"name":""},"version":"v1"}]}`, `{"rules":[{"cookie":{"name":"c"},"header":{"name":"h"},"version":"v"}]}`,
		`{"split":{"versions":[]}}`, `{"split":{"versions":[{"version":"v1","weight":0}]}}`,
		`{"split":{"versions":[{"version":"v1","weight":-1},{"version":"v2","weight":2}]}}`,
		`{"split":{"sticky_header":"a","sticky_cookie":"b","versions":[{"version":"v1","weight":1}]}}`,
		`{"split":{"sticky_cookie":"u","versions":[{"version":"v1","weight":9223372036854775807}]}}`,
		`{"split":{"versions":[{"version":"a","weight":4611686018427387904},{"version":"b","weight":4611686018427387904},{"version":"c","weight":4611686018427387904},{"version":"d","weight":4611686018427387904},{"version":"e","weight":1}]}}`,
		`{"header":"X-V","trust_incoming":true,"default":"v1","unknown":1}`,
	} {
		f.Add([]byte(raw), "v2", uint64(7))
	}
	f.Fuzz(func(t *testing.T, raw []byte, hv string, draw uint64) {
		c, err := parseConfig(raw)
		if (c == nil) == (err == nil) {
			t.Fatalf("parseConfig(%q) = %v, %v", raw, c, err)
		}
		if err != nil {
			return
		}
		versions := map[string]bool{}
		if c.Default != "" {
			versions[c.Default] = true
		}
		for _, r := range c.Rules {
			versions[r.Version] = true
		}
		if c.Header == "" || c.Header != strings.ToLower(c.Header) {
			t.Fatalf("parseConfig(%q): header %q", raw, c.Header)
		}
		if s := c.Split; s != nil {
			sum := new(big.Int)
			for _, w := range s.Versions {
				if !validVersion(w.Version) || w.Weight < 0 {
					t.Fatalf("parseConfig(%q) accepted %+v", raw, w)
				}
				sum.Add(sum, big.NewInt(int64(w.Weight)))
				versions[w.Version] = true
			}
			if sum.Sign() <= 0 || !sum.IsInt64() || sum.Int64() != int64(total(s.Versions)) {
				t.Fatalf("parseConfig(%q) accepted weights adding up to %v (total %d)", raw, sum, total(s.Versions))
			}
		}
		req := fakeReq{"cookie": "ab=b; u=" + hv, "x-canary": hv, "x-user-id": hv, c.Header: hv}
		if v, ok := c.choose(req, draw); ok && !versions[v] {
			t.Fatalf("choose picked %q, not a configured version", v)
		}
	})
}
