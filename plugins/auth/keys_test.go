package main

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
	"sync"
	"testing"
	"time"
)

// Test keys, generated once per process.
var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	rsaKey2  *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	hsSecret = []byte("0123456789abcdef0123456789abcdef")
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

// jwksJSON is a key set with the test keys: rsa1 (rsaKey), ec1, hs1.
func jwksJSON(t testing.TB) string {
	testKeys(t)
	pad := func(b []byte, n int) []byte { return append(make([]byte, n-len(b)), b...) }
	ecdhPub, err := ecKey.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	raw := ecdhPub.Bytes() // 0x04 || X || Y
	keys := []map[string]string{
		{"kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig", "n": b64.EncodeToString(rsaKey.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "ec1", "crv": "P-256", "x": b64.EncodeToString(pad(raw[1:33], 32)), "y": b64.EncodeToString(pad(raw[33:], 32))},
		{"kty": "oct", "kid": "hs1", "k": b64.EncodeToString(hsSecret)},
		{"kty": "RSA", "kid": "enc1", "use": "enc", "n": "AQAB", "e": "AQAB"},
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sign makes a JWT with alg, kid and claims, signed by the test key of alg
// (RS256 with rsaKey unless key is given).
func sign(t testing.TB, alg, kid string, cl map[string]any, key ...any) string {
	t.Helper()
	testKeys(t)
	h := map[string]string{"alg": alg, "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	hb, _ := json.Marshal(h)
	cb, _ := json.Marshal(cl)
	signed := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	sum := sha256.Sum256([]byte(signed))
	var sig []byte
	switch alg {
	case "RS256":
		k := rsaKey
		if len(key) > 0 {
			k = key[0].(*rsa.PrivateKey)
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
		m := hmac.New(sha256.New, hsSecret)
		m.Write([]byte(signed))
		sig = m.Sum(nil)
	case "none":
	}
	return signed + "." + b64.EncodeToString(sig)
}

// std are claims that pass the default test validator at time.Now().
func std(extra ...any) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": "https://idp.test", "aud": "api", "sub": "user-1",
		"exp": now.Add(time.Hour).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
			continue
		}
		c[extra[i].(string)] = extra[i+1]
	}
	return c
}
