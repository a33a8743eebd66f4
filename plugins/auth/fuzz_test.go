package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/weftmesh/weft/sdk/jsonscan"
)

// FuzzJWKS: any document parses into a usable key set or an error, never
// both or neither; every key holds exactly one usable public key of the
// sizes parseJWK promises (RSA ≥ 2048 bits, P-256, HMAC ≥ 32 bytes),
// byKid points into keys, and validating real tokens against the set
// never panics and never passes a key of the wrong kind.
func FuzzJWKS(f *testing.F) {
	f.Add(jwksJSON(f))
	for _, doc := range []string{
		`nope`, `{"keys":[]}`, `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}`,
		`{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`,
		`{"keys":[{"kty":"oct","kid":"a","alg":"HS256","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"},{"kty":"oct","kid":"a","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}`,
		`{"keys":[{"kty":"oct","use":"enc","k":""},{"kty":"OKP"},null]}`,
		`{"keys":null}`, `[]`, `{"keys":[{"kty":"RSA","n":"` + string(make([]byte, 0)) + `","e":"AAAAAAA"}]}`,
	} {
		f.Add(doc)
	}
	testKeys(f)
	tokens := []string{
		sign(f, "RS256", "rsa1", std()), sign(f, "ES256", "ec1", std()), sign(f, "HS256", "hs1", std()),
		sign(f, "HS256", "", std()), sign(f, "RS256", "a", std()), sign(f, "none", "", std()),
	}
	f.Fuzz(func(t *testing.T, doc string) {
		ks, err := parseJWKS([]byte(doc))
		if (ks == nil) == (err == nil) {
			t.Fatalf("parseJWKS(%q) = %v, %v", doc, ks, err)
		}
		if err != nil {
			return
		}
		if len(ks.keys) == 0 {
			t.Fatalf("parseJWKS(%q) returned an empty set", doc)
		}
		for _, k := range ks.keys {
			n := 0
			if k.rsa != nil {
				n++
				if k.rsa.N.BitLen() < 2048-7 {
					t.Fatalf("RSA key of %d bits accepted", k.rsa.N.BitLen())
				}
			}
			if k.ec != nil {
				n++
			}
			if k.hs != nil {
				n++
				if len(k.hs) < 32 {
					t.Fatalf("HMAC key of %d bytes accepted", len(k.hs))
				}
			}
			if n != 1 || len(k.jwk) == 0 {
				t.Fatalf("key %q holds %d public keys (jwk %q)", k.kid, n, k.jwk)
			}
		}
		for kid, k := range ks.byKid {
			if k.kid != kid || !contains(ks.keys, k) {
				t.Fatalf("byKid[%q] is not one of the keys", kid)
			}
		}
		v := &validator{algs: map[string]bool{"RS256": true, "ES256": true, "HS256": true},
			issuer: "https://idp.test", audiences: []string{"api"}, skew: time.Minute}
		for _, tok := range tokens {
			if _, _, err := v.validate(tok, ks, time.Now()); err == nil {
				h, _ := v.header(tok[:indexDot(tok)])
				if !hasKind(ks, h.Alg) {
					t.Fatalf("a %s token passed with no key of its kind in %q", h.Alg, doc)
				}
			}
		}
	})
}

func contains(ks []*key, k *key) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

func indexDot(s string) int {
	for i := range len(s) {
		if s[i] == '.' {
			return i
		}
	}
	return len(s)
}

func hasKind(ks *keySet, alg string) bool {
	for _, k := range ks.keys {
		switch {
		case alg == "RS256" && k.rsa != nil, alg == "ES256" && k.ec != nil, alg == "HS256" && k.hs != nil:
			return true
		}
	}
	return false
}

// FuzzParseConfig: any config is either accepted (a compiled config) or
// refused with an error, never both or neither, and the same bytes get the
// same answer.
func FuzzParseConfig(f *testing.F) {
	for _, raw := range []string{
		``, `{}`, `{"jwt":{}}`, `{"jwt":{"jwks":{"keys":[]}}}`,
		`{"jwt":{"remote_jwks":{}}}`, `{"api_keys":{"keys":{}}}`, `{"reject_status":500,"api_keys":{"keys":{"k":"v"}}}`,
		`{"jwt":{"algorithms":["PS256"],"remote_jwks":{"cluster":"c"}}}`, `{"unknown":1}`,
		`{"jwt":{"remote_jwks":{"cluster":"c"},"clock_skew":"abc"}}`,
		`{"jwt":{"remote_jwks":{"cluster":"idp"}}}`,
		`{"jwt":{"jwks":` + jwksJSON(f) + `,"issuer":"https://idp.test","audiences":["api"]}}`,
		`{"api_keys":{"keys":{"k1":"alice"}},"reject_status":403}`,
	} {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := parseConfig(raw)
		if (c == nil) == (err == nil) {
			t.Fatalf("parseConfig(%q) = %v, %v", raw, c, err)
		}
		c2, err2 := parseConfig(raw)
		if (c2 == nil) != (c == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("parseConfig(%q) answered %v then %v", raw, err, err2)
		}
	})
}

// FuzzParseHeader checks the JOSE header reader against encoding/json: it
// accepts a valid object whose alg and kid (when present) are strings, and
// reads the same alg and kid (the last of a repeated member).
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{`{"alg":"RS256","typ":"JWT"}`, `{"alg":"ES256","kid":"ec1"}`, `{"alg":"none"}`,
		`{"alg":1}`, `{"kid":null,"alg":"HS256"}`, `{"alg":"HS256","alg":"RS256"}`, `{"ALG":"x"}`, `{"alg":"\u0052S256"}`,
		`{}`, `[]`, ``, `{"alg":"RS256"`, `{"kid":["a"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := parseHeader(b)
		var m map[string]json.RawMessage
		valid := json.Unmarshal(b, &m) == nil && m != nil
		want := header{}
		for name, dst := range map[string]*string{"alg": &want.Alg, "kid": &want.Kid} {
			if raw, present := m[name]; present && json.Unmarshal(raw, dst) != nil || string(raw) == "null" {
				valid = false
			}
		}
		if bytes.Count(b, []byte("[")) > jsonscan.MaxDepth || bytes.Count(b, []byte("{")) > jsonscan.MaxDepth {
			if ok && !valid {
				t.Fatalf("parseHeader accepted %q", b)
			}
			return // deep nesting may be refused
		}
		if ok != valid || ok && h != want {
			t.Fatalf("parseHeader(%q) = %+v, %v; encoding/json %+v, %v", b, h, ok, want, valid)
		}
	})
}
