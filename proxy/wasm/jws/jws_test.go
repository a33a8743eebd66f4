package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKey is a Key with the standard library's crypto, for RS256, ES256
// and HS256 only.
type testKey struct {
	alg string // restriction ("" none)
	rsa *rsa.PublicKey
	ec  *ecdsa.PublicKey
	hs  []byte
}

func (k *testKey) Fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "RS256":
		return k.rsa != nil
	case "ES256":
		return k.ec != nil
	case "HS256":
		return k.hs != nil
	}
	return false
}

func (k *testKey) Verify(alg string, input, sig []byte) (bool, error) {
	sum := sha256.Sum256(input)
	switch alg {
	case "RS256":
		return rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, sum[:], sig) == nil, nil
	case "ES256":
		return len(sig) == 64 && ecdsa.Verify(k.ec, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])), nil
	case "HS256":
		m := hmac.New(sha256.New, k.hs)
		m.Write(input)
		return hmac.Equal(m.Sum(nil), sig), nil
	}
	return false, nil
}

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	rsaOther *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	secret   = []byte("0123456789abcdef0123456789abcdef")
)

func keys(t testing.TB) {
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaOther, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

// testSet allows RS256 and ES256 (not HS256) with a minute of skew: kids
// rsa1 (RS256 only), ec1, hs1, and a kid-less RSA key.
func testSet(t testing.TB) *Set {
	keys(t)
	s, err := NewSet([]string{"RS256", "ES256"}, time.Minute, []string{"iss", "sub", "aud", "missing"},
		[]string{"rsa1", "ec1", "hs1", ""},
		[]Key{&testKey{alg: "RS256", rsa: &rsaKey.PublicKey}, &testKey{ec: &ecKey.PublicKey}, &testKey{hs: secret}, &testKey{rsa: &rsaOther.PublicKey}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// token signs header and claims (raw JSON when strings) with alg's test
// key (RS256: rsaKey unless with is set).
func token(t testing.TB, hdr, claims any, alg string, with ...*rsa.PrivateKey) string {
	keys(t)
	enc := func(v any) string {
		if s, ok := v.(string); ok {
			return b64.EncodeToString([]byte(s))
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b64.EncodeToString(b)
	}
	signed := enc(hdr) + "." + enc(claims)
	sum := sha256.Sum256([]byte(signed))
	var sig []byte
	switch alg {
	case "RS256":
		k := rsaKey
		if len(with) > 0 {
			k = with[0]
		}
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:]); err != nil {
			t.Fatal(err)
		}
	case "ES256":
		r, s, err := ecdsa.Sign(rand.Reader, ecKey, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case "HS256":
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(signed))
		sig = m.Sum(nil)
	}
	return signed + "." + b64.EncodeToString(sig)
}

func claimsAt(now time.Time, extra ...any) map[string]any {
	c := map[string]any{"iss": "https://idp.test", "sub": "user-1", "aud": []string{"a", "b"},
		"exp": now.Add(time.Hour).Unix(), "nbf": now.Add(-time.Minute).Unix()}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
		} else {
			c[extra[i].(string)] = extra[i+1]
		}
	}
	return c
}

func TestVerify(t *testing.T) {
	s := testSet(t)
	now := time.Unix(1_800_000_000, 0)
	rs := map[string]string{"alg": "RS256", "kid": "rsa1"}
	good := token(t, rs, claimsAt(now), "RS256")
	forged := token(t, rs, claimsAt(now), "RS256", rsaOther)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + b64.EncodeToString([]byte(`{"sub":"admin"}`)) + "." + parts[2]
	for _, c := range []struct {
		name string
		tok  string
		want Code
	}{
		{"rs256", good, OK},
		{"es256", token(t, map[string]string{"alg": "ES256", "kid": "ec1"}, claimsAt(now), "ES256"), OK},
		{"no kid: each RSA key tried", token(t, map[string]string{"alg": "RS256"}, claimsAt(now), "RS256", rsaOther), OK},
		{"forged signature", forged, BadSignature},
		{"tampered payload", tampered, BadSignature},
		{"no kid, no key verifies", token(t, map[string]string{"alg": "ES256"}, claimsAt(now), "RS256"), BadSignature},
		{"alg none", parts[0][:0] + b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".", AlgNotAllowed},
		{"alg not allowed (HS256)", token(t, map[string]string{"alg": "HS256", "kid": "hs1"}, claimsAt(now), "HS256"), AlgNotAllowed},
		{"alg case", token(t, map[string]string{"alg": "rs256", "kid": "rsa1"}, claimsAt(now), "RS256"), AlgNotAllowed},
		{"unknown kid", token(t, map[string]string{"alg": "RS256", "kid": "nope"}, claimsAt(now), "RS256"), NoKey},
		{"kid of a key of another type", token(t, map[string]string{"alg": "RS256", "kid": "ec1"}, claimsAt(now), "RS256"), NoKey},
		{"kid of a key restricted to another alg", token(t, map[string]string{"alg": "ES256", "kid": "rsa1"}, claimsAt(now), "ES256"), NoKey},
		{"expired", token(t, rs, claimsAt(now, "exp", now.Add(-time.Minute).Unix()), "RS256"), Expired},
		{"expired within skew", token(t, rs, claimsAt(now, "exp", now.Add(-59*time.Second).Unix()), "RS256"), OK},
		{"not yet valid", token(t, rs, claimsAt(now, "nbf", now.Add(61*time.Second).Unix()), "RS256"), NotYetValid},
		{"nbf within skew", token(t, rs, claimsAt(now, "nbf", now.Add(59*time.Second).Unix()), "RS256"), OK},
		{"exp a string", token(t, rs, claimsAt(now, "exp", "soon"), "RS256"), Malformed},
		{"exp too large", token(t, rs, `{"exp":1e300}`, "RS256"), Malformed},
		{"nbf too large", token(t, rs, `{"nbf":-1e300}`, "RS256"), Malformed},
		{"fractional exp", token(t, rs, `{"exp":1800000059.5}`, "RS256"), OK},
		{"escaped exp name", token(t, rs, `{"\u0065xp":1}`, "RS256"), Expired},
		{"repeated exp: the last counts", token(t, rs, `{"exp":9999999999,"exp":1}`, "RS256"), Expired},
		{"payload not an object", token(t, rs, `[1]`, "RS256"), Malformed},
		{"payload not JSON", token(t, rs, `{"a":}`, "RS256"), Malformed},
		{"header not JSON", "e30x." + parts[1] + "." + parts[2], Malformed},
		{"alg not a string", token(t, `{"alg":1}`, claimsAt(now), "RS256"), Malformed},
		{"two parts", parts[0] + "." + parts[1], Malformed},
		{"four parts", good + ".x", Malformed},
		{"bad base64 signature", parts[0] + "." + parts[1] + ".!!", Malformed},
		{"empty", "", Malformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r Result
			if got := s.Verify([]byte(c.tok), now, &r); got != c.want {
				t.Fatalf("Verify = %d, want %d", got, c.want)
			}
		})
	}
}

func TestVerifyResult(t *testing.T) {
	s := testSet(t)
	now := time.Unix(1_800_000_000, 0)
	var r Result
	tok := token(t, map[string]string{"alg": "RS256", "kid": "rsa1"}, `{"sub":"a","sub":"user-1","iss":"https://idp.test","aud":["a","b"],"exp":1800000100.25}`, "RS256")
	if c := s.Verify([]byte(tok), now, &r); c != OK {
		t.Fatalf("Verify = %d", c)
	}
	if !r.HasExp || r.ExpSec != 1800000100 || r.ExpNsec != 250_000_000 {
		t.Errorf("exp %v %d %d", r.HasExp, r.ExpSec, r.ExpNsec)
	}
	want := []string{`"https://idp.test"`, `"user-1"`, `["a","b"]`}
	for i, w := range want {
		if string(r.Values[i]) != w {
			t.Errorf("claim %s = %s, want %s", s.Claims()[i], r.Values[i], w)
		}
	}
	if r.Values[3] != nil {
		t.Errorf("missing claim = %q", r.Values[3])
	}
	tok = token(t, map[string]string{"alg": "ES256"}, `{}`, "ES256")
	if c := s.Verify([]byte(tok), now, &r); c != OK || r.HasExp || r.Values[0] != nil {
		t.Errorf("no claims: %d %+v", c, r)
	}
}

func TestNewSetRefuses(t *testing.T) {
	k := []Key{&testKey{hs: secret}}
	for name, err := range map[string]error{
		"no alg":   second(NewSet(nil, 0, nil, []string{""}, k)),
		"none":     second(NewSet([]string{"none"}, 0, nil, []string{""}, k)),
		"no key":   second(NewSet([]string{"HS256"}, 0, nil, nil, nil)),
		"kids":     second(NewSet([]string{"HS256"}, 0, nil, nil, k)),
		"neg skew": second(NewSet([]string{"HS256"}, -1, nil, []string{""}, k)),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func second(_ *Set, err error) error { return err }

// TestVerifyAllocs: a valid token allocates nothing once the set's
// buffers have grown (the keys' own crypto aside: HS256 here).
func TestVerifyAllocs(t *testing.T) {
	s, err := NewSet([]string{"HS256"}, time.Minute, []string{"sub"}, []string{"hs1"}, []Key{&noAllocKey{}})
	if err != nil {
		t.Fatal(err)
	}
	tok := []byte(token(t, map[string]string{"alg": "HS256", "kid": "hs1"}, `{"sub":"u","exp":1900000000}`, "HS256"))
	now := time.Unix(1_800_000_000, 0)
	var r Result
	if n := testing.AllocsPerRun(100, func() {
		if s.Verify(tok, now, &r) != OK {
			t.Fatal("refused")
		}
	}); n != 0 {
		t.Errorf("%v allocations per Verify", n)
	}
}

// noAllocKey accepts any signature.
type noAllocKey struct{}

func (*noAllocKey) Fits(string) bool                            { return true }
func (*noAllocKey) Verify(string, []byte, []byte) (bool, error) { return true, nil }

// FuzzVerify: no token signed by none of the set's keys is accepted, and
// Verify never panics.
func FuzzVerify(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.e30.AAAA")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzMSJ9.eyJleHAiOiJ4In0.")
	s := testSet(f)
	f.Fuzz(func(t *testing.T, tok string) {
		var r Result
		if c := s.Verify([]byte(tok), time.Now(), &r); c == OK {
			t.Fatalf("a token not signed by the test keys was accepted: %q", tok)
		}
	})
}

// countingKey counts the signatures it checks (and accepts them all).
type countingKey struct{ n int }

func (*countingKey) Fits(string) bool { return true }
func (k *countingKey) Verify(string, []byte, []byte) (bool, error) {
	k.n++
	return true, nil
}

// TestVerifyCached: a valid token is checked once until its exp plus the
// skew; refused tokens are not remembered; a full cache starts over.
func TestVerifyCached(t *testing.T) {
	key := &countingKey{}
	s, err := NewSet([]string{"HS256"}, time.Minute, []string{"sub"}, []string{""}, []Key{key})
	if err != nil {
		t.Fatal(err)
	}
	s.SetCache(2)
	now := time.Unix(1_800_000_000, 0)
	tok := func(payload string) []byte {
		return []byte(b64.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." + b64.EncodeToString([]byte(payload)) + ".AAAA")
	}
	a := tok(`{"sub":"a","exp":1800000100}`)
	var r Result
	for i := range 3 {
		if c := s.VerifyCached(a, now, &r); c != OK || string(r.Values[0]) != `"a"` || !r.HasExp || r.ExpSec != 1800000100 {
			t.Fatalf("call %d: %d %+v", i, c, r)
		}
	}
	if key.n != 1 || !r.Cached {
		t.Errorf("%d signature checks for one token; cached %v", key.n, r.Cached)
	}
	if c := s.VerifyCached(a, now.Add(160*time.Second), &r); c != Expired {
		t.Errorf("after exp+skew: %d", c)
	}
	expired := tok(`{"exp":1}`)
	for range 2 {
		if c := s.VerifyCached(expired, now, &r); c != Expired {
			t.Fatalf("expired: %d", c)
		}
	}
	key.n = 0
	for _, p := range []string{`{"sub":"b"}`, `{"sub":"c"}`, `{"sub":"d"}`, `{"sub":"b"}`} {
		if c := s.VerifyCached(tok(p), now, &r); c != OK {
			t.Fatalf("%s: %d", p, c)
		}
	}
	if key.n != 4 { // b, c, d (starting over), b again
		t.Errorf("%d signature checks, want 4", key.n)
	}
	b := tok(`{"sub":"b"}`)
	if n := testing.AllocsPerRun(50, func() { s.VerifyCached(b, now, &r) }); n != 0 {
		t.Errorf("a cache hit allocates %v times", n)
	}
}

// TestVerifyCachedKeepsEachTokensClaims: a token checked after a cache hit
// does not write its claims into the entry that hit (the Result shared the
// entry's values): each cached token keeps answering its own claims.
func TestVerifyCachedKeepsEachTokensClaims(t *testing.T) {
	s, err := NewSet([]string{"HS256"}, time.Minute, []string{"sub"}, []string{""}, []Key{&countingKey{}})
	if err != nil {
		t.Fatal(err)
	}
	s.SetCache(16)
	now := time.Unix(1_800_000_000, 0)
	tok := func(sub string) []byte {
		return []byte(b64.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." + b64.EncodeToString([]byte(`{"sub":"`+sub+`"}`)) + ".AAAA")
	}
	var r Result
	for i, sub := range []string{"a", "a", "b", "a", "b", "c", "a", "c", "b", "a"} {
		if c := s.VerifyCached(tok(sub), now, &r); c != OK || len(r.Values) != 1 || string(r.Values[0]) != `"`+sub+`"` {
			t.Fatalf("call %d (%s): code %d, values %q", i, sub, c, r.Values)
		}
	}
}
