package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/filtertest"
	"github.com/weftmesh/weft/sdk/sdktest"
)

// tokens signed by the test keys: three good ones, one with another RSA
// key's signature.
func hostVerifyTokens(t testing.TB) (good []string, bad string) {
	return []string{sign(t, "RS256", "rsa1", std()), sign(t, "ES256", "ec1", std()), sign(t, "HS256", "hs1", std())},
		sign(t, "RS256", "rsa1", std(), rsaKey2)
}

// TestWasmVerifiesThroughHost: in Weft's real host the filter sends every
// signature check to weft.verify_signature (counted by
// auth_signatures_host_total), and a bad signature is still refused.
func TestWasmVerifiesThroughHost(t *testing.T) {
	h := filtertest.New(t, authWasm(t), filtertest.Config{PluginConfig: inlineConfig(t, `,"realm":"shop"`)})
	good, bad := hostVerifyTokens(t)
	for i, tok := range good {
		if res := h.Request(filtertest.Req{Headers: bearer(tok)}); res.Response.Status != 200 {
			t.Fatalf("token %d: status %d (%s)", i, res.Response.Status, res.Response.Body)
		}
	}
	res := h.Request(filtertest.Req{Headers: bearer(bad)})
	if v, _ := res.Response.Header("www-authenticate"); res.Response.Status != 401 || !strings.Contains(v, "bad signature") || res.UpstreamRequest != nil {
		t.Fatalf("bad signature: status %d, www-authenticate %q", res.Response.Status, v)
	}
	if m, err := h.Metric("auth_signatures_host_total"); err != nil || m.Value != 4 {
		t.Errorf("auth_signatures_host_total = %+v, %v; want 4", m, err)
	}
	if m, err := h.Metric("auth_signatures_vm_total"); err != nil || m.Value != 0 {
		t.Errorf("auth_signatures_vm_total = %+v, %v; want 0", m, err)
	}
}

// TestFallbackWithoutHostFunction: a host without weft.verify_signature
// (the emulated host offers none, like Envoy) gets the checks done in the
// VM; the filter asks once and remembers.
func TestFallbackWithoutHostFunction(t *testing.T) {
	h := sdktest.New(t, sdktest.Options{PluginConfig: inlineConfig(t, "")})
	good, bad := hostVerifyTokens(t)
	for i, tok := range append(good, good...) { // twice: the second time from the token cache
		s := h.NewStream(sdktest.Req{Headers: [][2]string{{"authorization", "Bearer " + tok}}})
		s.Run(nil)
		if !s.Forwarded() {
			t.Fatalf("token %d refused: %+v", i, s.Local)
		}
	}
	s := h.NewStream(sdktest.Req{Headers: [][2]string{{"authorization", "Bearer " + bad}}})
	s.Run(nil)
	if v, _ := s.Local.Header("www-authenticate"); s.Forwarded() || !strings.Contains(v, "bad signature") {
		t.Fatalf("bad signature: forwarded %v, www-authenticate %q", s.Forwarded(), v)
	}
	if n := h.ForeignCalls(hostVerifyFunc); n != 1 {
		t.Errorf("%s asked %d times, want once", hostVerifyFunc, n)
	}
	if v := h.Metric("auth_signatures_vm_total").Value; v != 4 {
		t.Errorf("auth_signatures_vm_total = %d, want 4", v)
	}
	if v := h.Metric("auth_signatures_host_total").Value; v != 0 {
		t.Errorf("auth_signatures_host_total = %d, want 0", v)
	}
	if !h.LogContains("does not offer " + hostVerifyFunc) {
		t.Error("the fallback was not logged")
	}
}

// nativeVerify is an emulated weft.verify_signature for RS256, ES256 and
// HS256 with JWK keys: it checks the arguments the filter encodes.
func nativeVerify(t *testing.T, seen *[]string) func([]byte) ([]byte, error) {
	return func(args []byte) ([]byte, error) {
		if len(args) < 2 || args[0] != hostVerifyVersion || args[1] != hostKeyFormatJWK {
			t.Errorf("header %v", args[:min(2, len(args))])
			return nil, sdk.StatusBadArgument
		}
		var f [4][]byte
		rest := args[2:]
		for i := range f {
			if len(rest) < 4 {
				return nil, sdk.StatusBadArgument
			}
			n := binary.LittleEndian.Uint32(rest)
			if int(n) > len(rest)-4 {
				return nil, sdk.StatusBadArgument
			}
			f[i], rest = rest[4:4+n], rest[4+n:]
		}
		if len(rest) != 0 {
			return nil, sdk.StatusBadArgument
		}
		alg, input, sig := string(f[0]), f[2], f[3]
		var j jwk
		if err := json.Unmarshal(f[1], &j); err != nil || j.Kid != "" {
			t.Errorf("key %s: %v", f[1], err)
			return nil, sdk.StatusBadArgument
		}
		*seen = append(*seen, alg)
		k, err := parseJWK(j)
		if err != nil {
			return nil, sdk.StatusBadArgument
		}
		sum := sha256.Sum256(input)
		ok := false
		switch alg {
		case "RS256":
			ok = rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, sum[:], sig) == nil
		case "ES256":
			ok = len(sig) == 64 && ecdsa.Verify(k.ec, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		case "HS256":
			m := hmac.New(sha256.New, k.hs)
			m.Write(input)
			ok = hmac.Equal(m.Sum(nil), sig)
		default:
			return nil, sdk.StatusBadArgument
		}
		if ok {
			return []byte{1}, nil
		}
		return []byte{0}, nil
	}
}

// TestHostFunctionArguments: with a host offering the function, the
// filter sends alg, the key as a JWK, the signing input and the raw
// signature, and trusts the answer both ways.
func TestHostFunctionArguments(t *testing.T) {
	var seen []string
	h := sdktest.New(t, sdktest.Options{
		PluginConfig:     inlineConfig(t, ""),
		ForeignFunctions: map[string]func([]byte) ([]byte, error){hostVerifyFunc: nativeVerify(t, &seen)},
	})
	good, bad := hostVerifyTokens(t)
	for i, tok := range append(good, bad) {
		s := h.NewStream(sdktest.Req{Headers: [][2]string{{"authorization", "Bearer " + tok}}})
		s.Run(nil)
		if s.Forwarded() != (i < len(good)) {
			t.Errorf("token %d: forwarded %v", i, s.Forwarded())
		}
	}
	if got := strings.Join(seen, ","); got != "RS256,ES256,HS256,RS256" {
		t.Errorf("the host checked %s", got)
	}
	if v := h.Metric("auth_signatures_host_total").Value; v != 4 {
		t.Errorf("auth_signatures_host_total = %d, want 4", v)
	}
	if v := h.Metric("auth_signatures_vm_total").Value; v != 0 {
		t.Errorf("auth_signatures_vm_total = %d, want 0", v)
	}
}

// TestHostRefusalFallsBackPerCall: a host refusing the arguments (e.g. a
// key it finds too weak) does not turn the function off: that check runs
// in the VM, the next one asks the host again.
func TestHostRefusalFallsBackPerCall(t *testing.T) {
	calls := 0
	h := sdktest.New(t, sdktest.Options{
		PluginConfig: inlineConfig(t, ""),
		ForeignFunctions: map[string]func([]byte) ([]byte, error){hostVerifyFunc: func([]byte) ([]byte, error) {
			calls++
			return nil, sdk.StatusBadArgument
		}},
	})
	good, bad := hostVerifyTokens(t)
	for i, tok := range append(good, bad) {
		s := h.NewStream(sdktest.Req{Headers: [][2]string{{"authorization", "Bearer " + tok}}})
		s.Run(nil)
		if s.Forwarded() != (i < len(good)) {
			t.Errorf("token %d: forwarded %v", i, s.Forwarded())
		}
	}
	if calls != 4 || h.Metric("auth_signatures_vm_total").Value != 4 {
		t.Errorf("host asked %d times, VM checked %d", calls, h.Metric("auth_signatures_vm_total").Value)
	}
}

// BenchmarkValidateHostStub is the guest's own work for a new RS256 token,
// compiled natively, with the host's signature check answered at once
// (sdktest): what remains to cut in the VM besides the host's RSA.
func BenchmarkValidateHostStub(b *testing.B) {
	sdk.Register(newPlugin)
	sdktest.New(b, sdktest.Options{PluginConfig: []byte(`{"jwt":{"jwks":` + jwksJSON(b) + `}}`),
		ForeignFunctions: map[string]func([]byte) ([]byte, error){
			hostVerifyFunc: func([]byte) ([]byte, error) { return []byte{1}, nil },
		}})
	ks, err := parseJWKS([]byte(jwksJSON(b)))
	if err != nil {
		b.Fatal(err)
	}
	v := &validator{algs: map[string]bool{"RS256": true}, issuer: "https://idp.test", audiences: []string{"api"}, skew: time.Minute, host: &hostVerifier{}}
	tok := sign(b, "RS256", "rsa1", std())
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, err := v.validate(tok, ks, now); err != nil {
			b.Fatal(err)
		}
	}
}
