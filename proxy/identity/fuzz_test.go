package identity

import (
	"strings"
	"testing"
)

// FuzzSPIFFE: ParseID accepts exactly what it can give back
// (spiffe:// + trust domain + path == input, and URIOf agrees), WorkloadID
// of parts that parse round-trips through ParseID, and MatchPattern keeps
// its promises: the empty id matches nothing, "*" every other id, an exact
// pattern only itself, and a "/*" pattern only valid ids of its own trust
// domain strictly below its prefix.
func FuzzSPIFFE(f *testing.F) {
	for _, s := range []string{"spiffe://td", "spiffe://weft.local/ns/a/sa/b", "spiffe://a-b_c.d/x.y",
		"", "http://td/x", "spiffe://", "spiffe://TD/x", "spiffe://td/a//b", "spiffe://td/a/../b",
		"spiffe://td/a?b", "spiffe://td:80/a", "spiffe://td/a/", "spiffe://td/%41"} {
		f.Add(s, "ns1", "sa1", "spiffe://td/ns/pay/*")
	}
	f.Add("spiffe://td/ns/pay/sa/api", "pay", "api", "spiffe://td/ns/pay/*")
	f.Add("spiffe://td/ns/payments/sa/api", "a/b", "..", "spiffe://td/ns/pay/*")
	f.Add("spiffe://td/x", "", "", "*")
	f.Add("spiffe://td/ns/pay", "x", "y", "spiffe://td/*")
	f.Fuzz(func(t *testing.T, id, ns, sa, pattern string) {
		td, path, err := ParseID(id)
		if err == nil {
			if "spiffe://"+td+path != id {
				t.Fatalf("ParseID(%q) = %q, %q", id, td, path)
			}
			u, err := URIOf(id)
			if err != nil || u.String() != id || u.Host != td || u.Path != path {
				t.Fatalf("URIOf(%q) = %v, %v (td %q path %q)", id, u, err, td, path)
			}
			if CheckPattern(id) != nil || !MatchPattern(id, id) || !MatchPattern("*", id) || MatchPattern(id+"/*", id) {
				t.Fatalf("%q as a pattern does not behave", id)
			}
			if path != "" && !MatchPattern("spiffe://"+td+"/*", id) {
				t.Fatalf("spiffe://%s/* does not match %q", td, id)
			}
		} else if _, err := URIOf(id); err == nil {
			t.Fatalf("URIOf(%q) accepted what ParseID refused", id)
		}

		if CheckTrustDomain(td) == nil && td != "" {
			w := WorkloadID(td, ns, sa)
			if wtd, wpath, err := ParseID(w); err == nil && (wtd != td || wpath != "/ns/"+ns+"/sa/"+sa) {
				t.Fatalf("WorkloadID(%q, %q, %q) = %q parses as %q, %q", td, ns, sa, w, wtd, wpath)
			}
		}

		if MatchPattern(pattern, "") {
			t.Fatalf("%q matches the empty id", pattern)
		}
		if CheckPattern(pattern) != nil || !MatchPattern(pattern, id) || pattern == "*" {
			return
		}
		base, prefix := strings.CutSuffix(pattern, "/*")
		if !prefix {
			if id != pattern {
				t.Fatalf("exact pattern %q matches %q", pattern, id)
			}
			return
		}
		if !strings.HasPrefix(id, base+"/") || len(id) <= len(base)+1 {
			t.Fatalf("%q matches %q, not below it", pattern, id)
		}
		if err == nil {
			btd, _, _ := ParseID(base)
			if btd != td {
				t.Fatalf("%q matches %q of trust domain %q", pattern, id, td)
			}
		}
	})
}
