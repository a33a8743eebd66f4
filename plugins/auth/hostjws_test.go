package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/wasm/jws"
	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/filtertest"
	"github.com/weftmesh/weft/sdk/sdktest"
)

// TestWasmChecksTokensInHost: in Weft's real host every token is checked
// whole by weft.jws_verify (auth_tokens_host_total), with the refusals of
// the VM path: forged, expired, not yet valid, wrong alg, wrong kid.
func TestWasmChecksTokensInHost(t *testing.T) {
	h := filtertest.New(t, authWasm(t), filtertest.Config{PluginConfig: inlineConfig(t, `,"realm":"shop"`)})
	now := time.Now()
	good := sign(t, "RS256", "rsa1", std())
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + b64.EncodeToString([]byte(`{"iss":"https://idp.test","aud":"api","sub":"admin"}`)) + "." + parts[2]
	cases := []struct {
		name, tok, desc string
	}{
		{"rs256", good, ""},
		{"es256", sign(t, "ES256", "ec1", std()), ""},
		{"hs256", sign(t, "HS256", "hs1", std()), ""},
		{"no kid", sign(t, "RS256", "", std()), ""},
		{"forged: another RSA key", sign(t, "RS256", "rsa1", std(), rsaKey2), "bad signature"},
		{"forged: payload swapped", tampered, "bad signature"},
		{"forged: HS256 under the RSA key's kid", sign(t, "HS256", "rsa1", std()), "no key matches the token"},
		{"expired", sign(t, "RS256", "rsa1", std("exp", now.Add(-2*time.Minute).Unix())), "token expired"},
		{"not yet valid", sign(t, "RS256", "rsa1", std("nbf", now.Add(time.Hour).Unix())), "token not yet valid"},
		{"wrong alg: none", sign(t, "none", "rsa1", std()), "algorithm not allowed"},
		{"wrong alg: unknown kid", sign(t, "RS256", "rsa9", std()), "no key matches the token"},
		{"wrong kid: the EC key's", sign(t, "RS256", "ec1", std()), "no key matches the token"},
		{"wrong audience", sign(t, "RS256", "rsa1", std("aud", "x")), "wrong audience"},
		{"wrong issuer", sign(t, "RS256", "rsa1", std("iss", "https://evil.test")), "wrong issuer"},
		{"malformed", "a.b", "malformed token"},
	}
	refused := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := h.Request(filtertest.Req{Headers: append(bearer(c.tok), [2]string{"x-user", "spoofed"})})
			if c.desc == "" {
				if res.Response.Status != 200 {
					t.Fatalf("status %d (%s)", res.Response.Status, res.Response.Body)
				}
				if v, _ := res.UpstreamRequest.Header("x-user"); v != "user-1" {
					t.Errorf("x-user = %q", v)
				}
				return
			}
			refused++
			v, _ := res.Response.Header("www-authenticate")
			if res.Response.Status != 401 || res.UpstreamRequest != nil || !strings.Contains(v, `error_description="`+c.desc+`"`) {
				t.Fatalf("status %d, www-authenticate %q, want %q", res.Response.Status, v, c.desc)
			}
		})
	}
	if m, err := h.Metric("auth_tokens_host_total"); err != nil || m.Value != float64(len(cases)) {
		t.Errorf("auth_tokens_host_total = %+v, %v; want %d", m, err, len(cases))
	}
	if m, err := h.Metric("auth_signatures_vm_total"); err != nil || m.Value != 0 {
		t.Errorf("auth_signatures_vm_total = %+v, %v; want 0", m, err)
	}
	if m, err := h.Metric("auth_denied_total"); err != nil || m.Value != float64(refused) {
		t.Errorf("auth_denied_total = %+v, %v; want %d", m, err, refused)
	}
}

// TestHostJWSAbsentFallsBack: a host without weft.jws_keys (the emulated
// host offers none, like Envoy) gets the tokens decoded in the VM; the
// filter asks once and remembers.
func TestHostJWSAbsentFallsBack(t *testing.T) {
	h := sdktest.New(t, sdktest.Options{PluginConfig: inlineConfig(t, "")})
	good, bad := hostVerifyTokens(t)
	for i, tok := range append(good, good...) {
		s := h.NewStream(sdktest.Req{Headers: bearer(tok)})
		s.Run(nil)
		if !s.Forwarded() {
			t.Fatalf("token %d refused: %+v", i, s.Local)
		}
	}
	s := h.NewStream(sdktest.Req{Headers: bearer(bad)})
	s.Run(nil)
	if s.Forwarded() {
		t.Fatal("a bad signature was let through")
	}
	if n := h.ForeignCalls(hostJWSKeysFunc); n != 1 {
		t.Errorf("%s asked %d times, want once", hostJWSKeysFunc, n)
	}
	if n := h.ForeignCalls(hostJWSVerifyFunc); n != 0 {
		t.Errorf("%s called %d times", hostJWSVerifyFunc, n)
	}
	if v := h.Metric("auth_signatures_vm_total").Value; v != 4 {
		t.Errorf("auth_signatures_vm_total = %d, want 4", v)
	}
	if !h.LogContains("does not offer " + hostJWSKeysFunc) {
		t.Error("the fallback was not logged")
	}
}

// TestHostJWSUntrustedAnswer: a host answering weft.jws_verify with more
// or other claims than asked is not believed.
func TestHostJWSUntrustedAnswer(t *testing.T) {
	h := sdktest.New(t, sdktest.Options{
		PluginConfig: inlineConfig(t, ""),
		ForeignFunctions: map[string]func([]byte) ([]byte, error){
			hostJWSKeysFunc:   func([]byte) ([]byte, error) { return []byte{1, 0, 0, 0}, nil },
			hostJWSVerifyFunc: func([]byte) ([]byte, error) { return append([]byte{0, 0}, make([]byte, 12)...), nil },
		},
	})
	s := h.NewStream(sdktest.Req{Headers: bearer(sign(t, "RS256", "rsa1", std()))})
	s.Run(nil)
	if v, _ := s.Local.Header("www-authenticate"); s.Forwarded() || !strings.Contains(v, "malformed token") {
		t.Fatalf("forwarded %v, www-authenticate %q", s.Forwarded(), v)
	}
}

// vmKey is a key of the VM path as package jws takes it, so the host's
// rules can be checked against the VM's with the same crypto.
type vmKey struct{ k *key }

func (a vmKey) Fits(alg string) bool { return a.k.fits(alg) }
func (a vmKey) Verify(alg string, input, sig []byte) (bool, error) {
	return verifyWith(a.k, alg, string(input), sig, nil) == nil, nil
}

// hostRules is the test key set as weft.jws_keys gives it to package jws.
func hostRules(t testing.TB, algs []string, claims []string) *jws.Set {
	ks, err := parseJWKS([]byte(jwksJSON(t)))
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	var keys []jws.Key
	for _, k := range ks.keys {
		kids, keys = append(kids, k.kid), append(keys, vmKey{k})
	}
	s, err := jws.NewSet(algs, time.Minute, claims, kids, keys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzHostRulesMatchVM: the host's checks (package jws, which
// weft.jws_verify runs) refuse every token the VM's validator refuses,
// with the same error, and give the same exp and claims for the others.
// The fuzzer chooses the JOSE header and the payload; the test signs them
// with the HS256 key, so parsing, alg and kid selection and the time
// checks are compared, not only malformed signatures.
func FuzzHostRulesMatchVM(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	for _, c := range [][2]string{
		{`{"alg":"HS256","kid":"hs1"}`, `{"sub":"u","exp":1800000100,"nbf":1799999000}`},
		{`{"alg":"HS256"}`, `{"exp":1799999940}`},
		{`{"alg":"HS256","kid":"hs1"}`, `{"nbf":1800000061,"aud":["a",1]}`},
		{`{"alg":"HS256","kid":"hs1","alg":"RS256"}`, `{}`},
		{`{"alg":"none"}`, `{}`},
		{`{"alg":"HS256","kid":"rsa1"}`, `{}`},
		{`{"alg":"HS256","kid":7}`, `{}`},
		{`{"alg":"HS256"}`, `{"\u0065xp":1,"sub":"a","sub":"b"}`},
		{`{"alg":"HS256"}`, `{"exp":1.8e9,"nbf":-5}`},
		{`{"alg":"HS256"}`, `{"exp":"1800000100"}`},
		{`{"alg":"HS256"}`, `[{}]`},
		{`{"alg":"HS256"}`, `{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`},
	} {
		f.Add([]byte(c[0]), []byte(c[1]), int64(0))
	}
	claims := []string{"iss", "aud", "sub"}
	set := hostRules(f, []string{"HS256", "RS256"}, claims)
	ks, err := parseJWKS([]byte(jwksJSON(f)))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, hdr, payload []byte, shift int64) {
		at := now.Add(time.Duration(shift%3600) * time.Second)
		signed := b64.EncodeToString(hdr) + "." + b64.EncodeToString(payload)
		m := hmac.New(sha256.New, hsSecret)
		m.Write([]byte(signed))
		tok := signed + "." + b64.EncodeToString(m.Sum(nil))

		v := &validator{algs: map[string]bool{"HS256": true, "RS256": true}, skew: time.Minute}
		cl, exp, vmErr := v.validate(tok, ks, at)
		var r jws.Result
		code := set.Verify([]byte(tok), at, &r)
		var hostErr error
		if code != jws.OK {
			hostErr = hostJWSErrors[code]
		}
		if vmErr != hostErr {
			t.Fatalf("token %q: VM %v, host %v (code %d)", tok, vmErr, hostErr, code)
		}
		if vmErr != nil {
			return
		}
		if r.HasExp != !exp.IsZero() || r.HasExp && (r.ExpSec != exp.Unix() || r.ExpNsec != int64(exp.Nanosecond())) {
			t.Fatalf("exp: VM %v, host %v %d.%09d", exp, r.HasExp, r.ExpSec, r.ExpNsec)
		}
		for i, name := range claims {
			want, _ := cl.get(name)
			if !bytes.Equal(want, r.Values[i]) {
				t.Fatalf("claim %s: VM %q, host %q", name, want, r.Values[i])
			}
		}
	})
}

// TestFilterStateless: with inline keys the filter serves every stream
// from one value (sdk.StatelessFilter); with remote keys a stream may wait
// for them paused, so it is not.
func TestFilterStateless(t *testing.T) {
	for cfg, want := range map[string]bool{
		string(inlineConfig(t, "")):                 true,
		`{"api_keys":{"keys":{"k":"id"}}}`:          true,
		`{"jwt":{"remote_jwks":{"cluster":"idp"}}}`: false,
	} {
		sdktest.New(t, sdktest.Options{PluginConfig: []byte(cfg)}) // a host for the constructor's calls
		p, err := newPlugin([]byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		f, ok := p.NewHTTPFilter(nil).(sdk.StatelessFilter)
		if !ok || f.Stateless() != want {
			t.Errorf("%.60s: stateless %v, want %v", cfg, ok && f.Stateless(), want)
		}
	}
}

// TestWasmCachedAnswersDecidedAlike: the VM reuses its decision for a
// valid token answered from the host's cache when the answer is the same
// as the last one; tokens that alternate, each seen again from the cache,
// still get their own claims copied and their own refusal.
func TestWasmCachedAnswersDecidedAlike(t *testing.T) {
	h := filtertest.New(t, authWasm(t), filtertest.Config{PluginConfig: inlineConfig(t, "")})
	user1 := sign(t, "RS256", "rsa1", std())
	user2 := sign(t, "RS256", "rsa1", std("sub", "user-2"))
	wrongAud := sign(t, "RS256", "rsa1", std("aud", "x"))
	wrongIss := sign(t, "RS256", "rsa1", std("iss", "https://evil.test"))
	seq := []struct{ tok, user, desc string }{
		{user1, "user-1", ""}, {user1, "user-1", ""}, {user1, "user-1", ""},
		{wrongAud, "", "wrong audience"}, {wrongAud, "", "wrong audience"},
		{user1, "user-1", ""}, {user2, "user-2", ""}, {user2, "user-2", ""},
		{wrongIss, "", "wrong issuer"}, {user2, "user-2", ""}, {wrongIss, "", "wrong issuer"},
		{user1, "user-1", ""},
	}
	allowed := 0
	for i, c := range seq {
		res := h.Request(filtertest.Req{Headers: append(bearer(c.tok), [2]string{"x-user", "spoofed"})})
		if c.desc != "" {
			v, _ := res.Response.Header("www-authenticate")
			if res.Response.Status != 401 || res.UpstreamRequest != nil || !strings.Contains(v, `error_description="`+c.desc+`"`) {
				t.Fatalf("request %d: status %d, www-authenticate %q, want %q", i, res.Response.Status, v, c.desc)
			}
			continue
		}
		allowed++
		if res.Response.Status != 200 || res.UpstreamRequest == nil {
			v, _ := res.Response.Header("www-authenticate")
			t.Fatalf("request %d: status %d (%s) %s", i, res.Response.Status, res.Response.Body, v)
		}
		if v, _ := res.UpstreamRequest.Header("x-user"); v != c.user {
			t.Errorf("request %d: x-user = %q, want %q", i, v, c.user)
		}
		if _, ok := res.UpstreamRequest.Header("authorization"); ok {
			t.Errorf("request %d: the token was forwarded", i)
		}
	}
	// Four distinct tokens checked whole by the host, the rest from its
	// cache; every allowed request counted.
	if m, err := h.Metric("auth_tokens_host_total"); err != nil || m.Value != 4 {
		t.Errorf("auth_tokens_host_total = %+v, %v; want 4", m, err)
	}
	if m, err := h.Metric("auth_allowed_total"); err != nil || m.Value != float64(allowed) {
		t.Errorf("auth_allowed_total = %+v, %v; want %d", m, err, allowed)
	}
	if m, err := h.Metric("auth_denied_total"); err != nil || m.Value != float64(len(seq)-allowed) {
		t.Errorf("auth_denied_total = %+v, %v; want %d", m, err, len(seq)-allowed)
	}
}
