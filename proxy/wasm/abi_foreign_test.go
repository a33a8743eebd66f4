package wasm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/big"
	"sync"
	"testing"
)

// Test keys for weft.verify_signature, generated once per process.
type verifyTestKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	rsaWeak   *rsa.PrivateKey // 1024 bits: refused
	p256      *ecdsa.PrivateKey
	p384      *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
	secret    []byte
}

var (
	vkOnce sync.Once
	vk     verifyTestKeys
)

func testVerifyKeys(t testing.TB) *verifyTestKeys {
	t.Helper()
	vkOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		vk.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		vk.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		// GenerateKey refuses < 1024-bit keys; 1024 is enough to be refused by the host.
		vk.rsaWeak, err = rsa.GenerateKey(rand.Reader, 1024)
		must(err)
		vk.p256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		vk.p384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		_, vk.ed, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		vk.secret = []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	})
	return &vk
}

var tb64 = base64.RawURLEncoding

// jwkOf is the public JWK of key (a private key or a secret), with alg when
// given.
func jwkOf(t testing.TB, key any, alg string) []byte {
	t.Helper()
	m := map[string]string{}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		m["kty"], m["n"], m["e"] = "RSA", tb64.EncodeToString(k.N.Bytes()), tb64.EncodeToString(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		m["kty"], m["crv"] = "EC", k.Curve.Params().Name
		m["x"] = tb64.EncodeToString(k.X.FillBytes(make([]byte, size)))
		m["y"] = tb64.EncodeToString(k.Y.FillBytes(make([]byte, size)))
	case ed25519.PrivateKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", tb64.EncodeToString(k.Public().(ed25519.PublicKey))
	case []byte:
		m["kty"], m["k"] = "oct", tb64.EncodeToString(k)
	default:
		t.Fatalf("jwkOf %T", key)
	}
	if alg != "" {
		m["alg"] = alg
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// derOf is the PKIX DER of key's public half.
func derOf(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwsSign signs input the JWS way.
func jwsSign(t testing.TB, alg string, key any, input []byte) []byte {
	t.Helper()
	digest := func(h crypto.Hash) []byte {
		w := h.New()
		w.Write(input)
		return w.Sum(nil)
	}
	hashOf := map[byte]crypto.Hash{'2': crypto.SHA256, '3': crypto.SHA384, '5': crypto.SHA512}
	var h crypto.Hash
	if alg != "EdDSA" {
		h = hashOf[alg[2]]
	}
	switch alg[:2] {
	case "RS":
		s, err := rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), h, digest(h))
		if err != nil {
			t.Fatal(err)
		}
		return s
	case "PS":
		s, err := rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), h, digest(h), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			t.Fatal(err)
		}
		return s
	case "ES":
		k := key.(*ecdsa.PrivateKey)
		r, s, err := ecdsa.Sign(rand.Reader, k, digest(h))
		if err != nil {
			t.Fatal(err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		return append(r.FillBytes(make([]byte, size)), s.FillBytes(make([]byte, size))...)
	case "Ed":
		return ed25519.Sign(key.(ed25519.PrivateKey), input)
	case "HS":
		newHash := sha256.New
		switch h {
		case crypto.SHA384:
			newHash = sha512.New384
		case crypto.SHA512:
			newHash = sha512.New
		}
		m := hmac.New(newHash, key.([]byte))
		m.Write(input)
		return m.Sum(nil)
	}
	t.Fatalf("jwsSign %s", alg)
	return nil
}

// verifyArgs encodes weft.verify_signature's arguments.
func verifyArgs(format byte, alg string, key, input, sig []byte) []byte {
	b := []byte{verifyVersion, format}
	for _, f := range [][]byte{[]byte(alg), key, input, sig} {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// callForeign calls proxy_call_foreign_function(name, args) from h's
// stream context and returns the status and the returned data.
func (h *hostEnv) callForeign(name string, args []byte) (uint32, []byte) {
	h.t.Helper()
	np, nl := h.put([]byte(name))
	ap, al := h.put(args)
	h.v.writeU32(retPtr, 0)
	h.v.writeU32(retLen, 0)
	st := h.call("proxy_call_foreign_function", np, nl, ap, al, retPtr, retLen)
	h.next = testArea // the area is reused call after call
	if st != statusOK {
		return st, nil
	}
	return st, h.ret()
}

func TestForeignVerifySignature(t *testing.T) {
	k := testVerifyKeys(t)
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers")}, Env{})
	h := newHostEnv(t, p, newStream("/"))
	input := []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ")
	other := []byte("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9")

	type tc struct {
		alg    string
		format byte
		key    []byte
		signer any
	}
	cases := []tc{
		{"RS256", keyFormatJWK, jwkOf(t, k.rsa, "RS256"), k.rsa},
		{"RS256", keyFormatDER, derOf(t, k.rsa), k.rsa},
		{"RS256", keyFormatDER, x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey), k.rsa},
		{"RS384", keyFormatJWK, jwkOf(t, k.rsa, ""), k.rsa},
		{"RS512", keyFormatJWK, jwkOf(t, k.rsa, ""), k.rsa},
		{"PS256", keyFormatJWK, jwkOf(t, k.rsa, ""), k.rsa},
		{"PS512", keyFormatDER, derOf(t, k.rsa), k.rsa},
		{"ES256", keyFormatJWK, jwkOf(t, k.p256, ""), k.p256},
		{"ES256", keyFormatDER, derOf(t, k.p256), k.p256},
		{"ES384", keyFormatJWK, jwkOf(t, k.p384, "ES384"), k.p384},
		{"EdDSA", keyFormatJWK, jwkOf(t, k.ed, ""), k.ed},
		{"EdDSA", keyFormatDER, derOf(t, k.ed), k.ed},
		{"HS256", keyFormatJWK, jwkOf(t, k.secret, "HS256"), k.secret},
		{"HS256", keyFormatRaw, k.secret, k.secret},
		{"HS512", keyFormatRaw, k.secret, k.secret},
	}
	for _, c := range cases {
		t.Run(c.alg+"/"+[]string{"jwk", "der", "raw"}[c.format], func(t *testing.T) {
			h.t = t
			sig := jwsSign(t, c.alg, c.signer, input)
			if st, res := h.callForeign(foreignVerifySignature, verifyArgs(c.format, c.alg, c.key, input, sig)); st != statusOK || len(res) != 1 || res[0] != 1 {
				t.Fatalf("valid signature: status %d result %v", st, res)
			}
			// The same signature over other bytes, a flipped bit, a
			// truncated signature: invalid, not an error.
			bad := append([]byte(nil), sig...)
			bad[len(bad)/2] ^= 0x10
			for name, args := range map[string][]byte{
				"other input":   verifyArgs(c.format, c.alg, c.key, other, sig),
				"flipped bit":   verifyArgs(c.format, c.alg, c.key, input, bad),
				"truncated sig": verifyArgs(c.format, c.alg, c.key, input, sig[:len(sig)-1]),
				"empty sig":     verifyArgs(c.format, c.alg, c.key, input, nil),
			} {
				if st, res := h.callForeign(foreignVerifySignature, args); st != statusOK || len(res) != 1 || res[0] != 0 {
					t.Errorf("%s: status %d result %v, want OK [0]", name, st, res)
				}
			}
		})
	}
	h.t = t

	// Another key's signature is invalid.
	sig2 := jwsSign(t, "RS256", k.rsa2, input)
	if st, res := h.callForeign(foreignVerifySignature, verifyArgs(keyFormatJWK, "RS256", jwkOf(t, k.rsa, ""), input, sig2)); st != statusOK || res[0] != 0 {
		t.Errorf("another key's signature: %d %v", st, res)
	}

	rsSig := jwsSign(t, "RS256", k.rsa, input)
	good := verifyArgs(keyFormatJWK, "RS256", jwkOf(t, k.rsa, ""), input, rsSig)
	bad := map[string][]byte{
		"empty":             nil,
		"version 2":         append([]byte{2}, good[1:]...),
		"format 3":          append([]byte{verifyVersion, 3}, good[2:]...),
		"truncated":         good[:len(good)-1],
		"trailing byte":     append(append([]byte(nil), good...), 0),
		"huge length":       append([]byte{verifyVersion, 0, 0xff, 0xff, 0xff, 0xff}, good[6:]...),
		"unknown alg":       verifyArgs(keyFormatJWK, "RS257", jwkOf(t, k.rsa, ""), input, rsSig),
		"alg none":          verifyArgs(keyFormatJWK, "none", jwkOf(t, k.rsa, ""), input, nil),
		"jwk alg mismatch":  verifyArgs(keyFormatJWK, "RS256", jwkOf(t, k.rsa, "PS256"), input, rsSig),
		"rsa key for ES256": verifyArgs(keyFormatJWK, "ES256", jwkOf(t, k.rsa, ""), input, rsSig),
		"P-384 for ES256":   verifyArgs(keyFormatJWK, "ES256", jwkOf(t, k.p384, ""), input, make([]byte, 64)),
		"secret for RS256":  verifyArgs(keyFormatJWK, "RS256", jwkOf(t, k.secret, ""), input, rsSig),
		"raw for RS256":     verifyArgs(keyFormatRaw, "RS256", k.secret, input, rsSig),
		"der for HS256":     verifyArgs(keyFormatDER, "HS256", derOf(t, k.rsa), input, rsSig),
		"rsa 1024":          verifyArgs(keyFormatJWK, "RS256", jwkOf(t, k.rsaWeak, ""), input, jwsSign(t, "RS256", k.rsaWeak, input)),
		"short secret":      verifyArgs(keyFormatRaw, "HS256", []byte("short"), input, make([]byte, 32)),
		"hs512 32B secret":  verifyArgs(keyFormatRaw, "HS512", k.secret[:32], input, make([]byte, 64)),
		"jwk not json":      verifyArgs(keyFormatJWK, "RS256", []byte("{"), input, rsSig),
		"jwk use enc":       verifyArgs(keyFormatJWK, "RS256", []byte(`{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}`), input, rsSig),
		"jwk kty unknown":   verifyArgs(keyFormatJWK, "RS256", []byte(`{"kty":"XYZ"}`), input, rsSig),
		"ec off curve":      verifyArgs(keyFormatJWK, "ES256", []byte(`{"kty":"EC","crv":"P-256","x":"`+tb64.EncodeToString(make([]byte, 32))+`","y":"`+tb64.EncodeToString(make([]byte, 32))+`"}`), input, make([]byte, 64)),
		"der garbage":       verifyArgs(keyFormatDER, "RS256", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, input, rsSig),
		"empty key":         verifyArgs(keyFormatDER, "RS256", nil, input, rsSig),
	}
	for name, args := range bad {
		if st, res := h.callForeign(foreignVerifySignature, args); st != statusBadArgument || res != nil {
			t.Errorf("%s: status %d result %v, want BadArgument", name, st, res)
		}
	}

	// Unknown names answer NotFound, as in Envoy; bad pointers
	// InvalidMemoryAccess.
	for _, name := range []string{"", "verify_signature", "weft.verify_signature2", "weft.Verify_signature"} {
		if st, _ := h.callForeign(name, good); st != statusNotFound {
			t.Errorf("foreign function %q: status %d, want NotFound", name, st)
		}
	}
	np, nl := h.put([]byte(foreignVerifySignature))
	ap, al := h.put(good)
	h.next = testArea
	for _, args := range [][]uint64{
		{0xffffff00, nl, ap, al, retPtr, retLen},
		{np, nl, 0xffffff00, al, retPtr, retLen},
		{np, nl, ap, 1 << 30, retPtr, retLen},
		{np, nl, ap, al, 0xfffffff0, retLen},
		{np, nl, ap, al, retPtr, 0xfffffffe},
	} {
		if st := h.call("proxy_call_foreign_function", args...); st != statusInvalidMemoryAccess {
			t.Errorf("args %v: status %d, want InvalidMemoryAccess", args, st)
		}
	}
	// The VM still serves a stream.
	s := newStream("/after", "X-In", "ok")
	if o := runStream(p, s); o.req != 0 || string(s.Request.Header.Peek("X-Echo")) != "ok" {
		t.Fatalf("after the foreign calls: %+v", o)
	}
}

func TestKeyCacheHitsAndBounds(t *testing.T) {
	k := testVerifyKeys(t)
	c := newKeyCache(4)
	jwk := jwkOf(t, k.p256, "")
	k1, err := c.get(keyFormatJWK, jwk)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := c.get(keyFormatJWK, append([]byte(nil), jwk...))
	if err != nil || k1 != k2 {
		t.Fatalf("the same key bytes parsed twice (%p %p, %v)", k1, k2, err)
	}
	// Same bytes under another format are another key (and here an error).
	if _, err := c.get(keyFormatDER, jwk); err == nil {
		t.Error("JWK bytes parsed as DER")
	}
	if allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.get(keyFormatJWK, jwk); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("a cache hit allocates %.1f times", allocs)
	}
	// Bounded: many distinct keys keep at most max entries, and the key
	// in constant use survives the churn.
	for i := 0; i < 40; i++ {
		if _, err := c.get(keyFormatRaw, fmt.Appendf(nil, "secret-%02d-0123456789abcdef0123456789", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.get(keyFormatJWK, jwk); err != nil {
			t.Fatal(err)
		}
		if n := c.len(); n > 4 {
			t.Fatalf("cache holds %d keys, max 4", n)
		}
	}
	if k3, _ := c.get(keyFormatJWK, jwk); k3 != k1 {
		t.Error("the hot key was evicted")
	}
}

// TestKeyCacheConcurrent runs verifications from many goroutines (for the
// race detector) over more keys than the cache holds.
func TestKeyCacheConcurrent(t *testing.T) {
	k := testVerifyKeys(t)
	r := newForeignRegistry()
	r.keys = newKeyCache(3)
	input := []byte("a.b")
	var argsList [][]byte
	for i := 0; i < 6; i++ {
		secret := fmt.Appendf(nil, "%02d-0123456789abcdef0123456789abcdef", i)
		argsList = append(argsList, verifyArgs(keyFormatRaw, "HS256", secret, input, jwsSign(t, "HS256", secret, input)))
	}
	argsList = append(argsList, verifyArgs(keyFormatJWK, "ES256", jwkOf(t, k.p256, ""), input, jwsSign(t, "ES256", k.p256, input)))
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				args := argsList[(i+g)%len(argsList)]
				if ok, err := r.verify(args); err != nil || !ok {
					errs <- fmt.Errorf("goroutine %d call %d: %v %v", g, i, ok, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := r.keys.len(); n > 3 {
		t.Errorf("cache holds %d keys", n)
	}
}

// FuzzForeignVerifyArgs feeds arbitrary argument bytes to
// weft.verify_signature through the ABI: the answer is BadArgument, or OK
// with one byte 0 or 1, and nothing panics.
func FuzzForeignVerifyArgs(f *testing.F) {
	k := testVerifyKeys(f)
	input := []byte("eyJhbGciOiJFUzI1NiJ9.e30")
	for _, c := range []struct {
		alg    string
		format byte
		key    []byte
		signer any
	}{
		{"RS256", keyFormatJWK, jwkOf(f, k.rsa, ""), k.rsa},
		{"ES256", keyFormatJWK, jwkOf(f, k.p256, ""), k.p256},
		{"ES256", keyFormatDER, derOf(f, k.p256), k.p256},
		{"HS256", keyFormatJWK, jwkOf(f, k.secret, ""), k.secret},
		{"EdDSA", keyFormatJWK, jwkOf(f, k.ed, ""), k.ed},
	} {
		f.Add(verifyArgs(c.format, c.alg, c.key, input, jwsSign(f, c.alg, c.signer, input)))
	}
	f.Add([]byte{1, 0, 5, 0, 0, 0, 'H', 'S', '2', '5', '6'})
	f.Add([]byte{})
	rt := newRuntime(f)
	p := load(f, rt, PluginSpec{Module: wat(f, "headers")}, Env{})
	f.Fuzz(func(t *testing.T, args []byte) {
		if len(args) > 20000 {
			return // the test area of guest memory
		}
		h := newHostEnv(t, p, newStream("/fuzz"))
		st, res := h.callForeign(foreignVerifySignature, args)
		switch {
		case st == statusBadArgument && res == nil:
		case st == statusOK && len(res) == 1 && (res[0] == 0 || res[0] == 1):
		default:
			t.Fatalf("status %d result %v", st, res)
		}
	})
}

// BenchmarkForeignVerify is weft.verify_signature's work on a cached key
// (no guest involved): decode, cache hit, hash, verify.
func BenchmarkForeignVerify(b *testing.B) {
	k := testVerifyKeys(b)
	input := []byte("eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTEifQ.eyJzdWIiOiJ1c2VyLTEiLCJhdWQiOiJhcGkifQ")
	for _, c := range []struct {
		alg    string
		format byte
		key    []byte
		signer any
	}{
		{"RS256", keyFormatJWK, jwkOf(b, k.rsa, "RS256"), k.rsa},
		{"ES256", keyFormatJWK, jwkOf(b, k.p256, ""), k.p256},
		{"HS256", keyFormatJWK, jwkOf(b, k.secret, ""), k.secret},
	} {
		b.Run(c.alg, func(b *testing.B) {
			r := newForeignRegistry()
			args := verifyArgs(c.format, c.alg, c.key, input, jwsSign(b, c.alg, c.signer, input))
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := r.verify(args); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
