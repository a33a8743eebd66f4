package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func testValidator(t *testing.T) (*validator, *keySet) {
	t.Helper()
	ks, err := parseJWKS([]byte(jwksJSON(t)))
	if err != nil {
		t.Fatal(err)
	}
	return &validator{
		algs:   map[string]bool{"RS256": true, "ES256": true, "HS256": true},
		issuer: "https://idp.test", audiences: []string{"api", "other"}, skew: time.Minute,
	}, ks
}

func TestValidate(t *testing.T) {
	v, ks := testValidator(t)
	testKeys(t)
	now := time.Now()
	tamper := func(tok string) string {
		i := strings.LastIndexByte(tok, '.')
		sig := []byte(tok[i+1:])
		if sig[5] == 'A' {
			sig[5] = 'B'
		} else {
			sig[5] = 'A'
		}
		return tok[:i+1] + string(sig)
	}
	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"rs256", sign(t, "RS256", "rsa1", std()), nil},
		{"rs256 without kid", sign(t, "RS256", "", std()), nil},
		{"es256", sign(t, "ES256", "ec1", std()), nil},
		{"hs256", sign(t, "HS256", "hs1", std()), nil},
		{"aud array", sign(t, "RS256", "rsa1", std("aud", []string{"x", "other"})), nil},
		{"expired", sign(t, "RS256", "rsa1", std("exp", now.Add(-2*time.Minute).Unix())), errExpired},
		{"expired within skew", sign(t, "RS256", "rsa1", std("exp", now.Add(-30*time.Second).Unix())), nil},
		{"not yet valid", sign(t, "RS256", "rsa1", std("nbf", now.Add(2*time.Minute).Unix())), errNotYetValid},
		{"nbf within skew", sign(t, "RS256", "rsa1", std("nbf", now.Add(30*time.Second).Unix())), nil},
		{"wrong audience", sign(t, "RS256", "rsa1", std("aud", "nope")), errAudience},
		{"no audience", sign(t, "RS256", "rsa1", std("aud", nil)), errAudience},
		{"wrong issuer", sign(t, "RS256", "rsa1", std("iss", "https://evil.test")), errIssuer},
		{"bad signature", tamper(sign(t, "RS256", "rsa1", std())), errSignature},
		{"bad es256 signature", tamper(sign(t, "ES256", "ec1", std())), errSignature},
		{"bad hs256 signature", tamper(sign(t, "HS256", "hs1", std())), errSignature},
		{"other rsa key", sign(t, "RS256", "rsa1", std(), rsaKey2), errSignature},
		{"other rsa key no kid", sign(t, "RS256", "", std(), rsaKey2), errSignature},
		{"unknown kid", sign(t, "RS256", "nope", std()), errNoKey},
		{"kid of another type", sign(t, "RS256", "ec1", std()), errNoKey},
		{"alg none", sign(t, "none", "", std()), errAlgorithm},
		{"not a jwt", "abc", errMalformed},
		{"two parts", "a.b", errMalformed},
		{"four parts", "a.b.c.d", errMalformed},
		{"bad base64", "!!.e30.AA", errMalformed},
		{"exp not a number", sign(t, "RS256", "rsa1", std("exp", "tomorrow")), errMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, _, err := v.validate(c.token, ks, now)
			if !errors.Is(err, c.want) {
				t.Fatalf("validate = %v, want %v", err, c.want)
			}
			if err == nil {
				if sub, _ := cl.headerValue("sub"); sub != "user-1" {
					t.Errorf("sub = %q", sub)
				}
			}
		})
	}
}

func TestAlgorithmAllowList(t *testing.T) {
	v, ks := testValidator(t)
	v.algs = map[string]bool{"RS256": true}
	if _, _, err := v.validate(sign(t, "HS256", "hs1", std()), ks, time.Now()); !errors.Is(err, errAlgorithm) {
		t.Fatalf("HS256 with only RS256 allowed: %v", err)
	}
}

func TestNoKeys(t *testing.T) {
	v, _ := testValidator(t)
	if _, _, err := v.validate(sign(t, "RS256", "rsa1", std()), nil, time.Now()); !errors.Is(err, errNoKeys) {
		t.Fatalf("no keys: %v", err)
	}
}

func TestClaimHeaderValues(t *testing.T) {
	v, ks := testValidator(t)
	cl, _, err := v.validate(sign(t, "RS256", "rsa1", std("groups", []string{"a", "b"}, "admin", true, "level", 3, "obj", map[string]any{"x": 1})), ks, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for claim, want := range map[string]string{"groups": "a,b", "admin": "true", "level": "3"} {
		if got, ok := cl.headerValue(claim); !ok || got != want {
			t.Errorf("%s = %q, %v; want %q", claim, got, ok, want)
		}
	}
	if _, ok := cl.headerValue("obj"); ok {
		t.Error("an object claim became a header")
	}
}

func TestParseJWKSErrors(t *testing.T) {
	for _, doc := range []string{
		`nope`, `{"keys":[]}`, `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]}`,
		`{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`,
	} {
		if _, err := parseJWKS([]byte(doc)); err == nil {
			t.Errorf("parseJWKS(%s) accepted it", doc)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, raw := range []string{
		``, `{}`, `{"jwt":{}}`, `{"jwt":{"jwks":{"keys":[]}}}`,
		`{"jwt":{"remote_jwks":{}}}`, `{"api_keys":{"keys":{}}}`, `{"reject_status":500,"api_keys":{"keys":{"k":"v"}}}`,
		`{"jwt":{"algorithms":["PS256"],"remote_jwks":{"cluster":"c"}}}`, `{"unknown":1}`,
		`{"jwt":{"remote_jwks":{"cluster":"c"},"clock_skew":"abc"}}`,
	} {
		if _, err := parseConfig([]byte(raw)); err == nil {
			t.Errorf("parseConfig(%s) accepted it", raw)
		}
	}
	c, err := parseConfig([]byte(`{"jwt":{"remote_jwks":{"cluster":"idp"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.RejectStatus != 401 || c.skew != time.Minute || c.refresh != 5*time.Minute || c.tokenHdr != "authorization" ||
		c.prefix != "Bearer " || c.JWT.RemoteJWKS.Path != "/.well-known/jwks.json" || !c.algs["RS256"] || c.algs["HS256"] {
		t.Errorf("defaults: %+v", c)
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.e30.AAAA")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMSJ9.eyJleHAiOiJ4In0.")
	f.Fuzz(func(t *testing.T, tok string) {
		v, ks := testValidator(t)
		if _, _, err := v.validate(tok, ks, time.Now()); err == nil {
			t.Fatalf("a token not signed by the test keys was accepted: %q", tok)
		}
	})
}
