package wasm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/wasm/jws"
)

// jwsKey is one key of weft.jws_keys' arguments.
type jwsKey struct {
	kid string
	jwk []byte
}

// jwsKeysArgs encodes weft.jws_keys' arguments, with no cache and no
// token header.
func jwsKeysArgs(release uint32, skew time.Duration, algs, claims []string, keys []jwsKey) []byte {
	return jwsKeysArgsFrom(release, skew, algs, claims, 0, "", "", 0, 0, keys)
}

// jwsKeysArgsFrom encodes weft.jws_keys' arguments.
func jwsKeysArgsFrom(release uint32, skew time.Duration, algs, claims []string, cache uint32, header, prefix string, ansPtr, ansCap uint32, keys []jwsKey) []byte {
	b := binary.LittleEndian.AppendUint32([]byte{jwsVersion}, release)
	b = binary.LittleEndian.AppendUint64(b, uint64(skew))
	for _, list := range [][]string{algs, claims} {
		b = append(b, byte(len(list)))
		for _, s := range list {
			b = append(append(b, byte(len(s))), s...)
		}
	}
	b = binary.LittleEndian.AppendUint32(b, cache)
	b = append(append(b, byte(len(header))), header...)
	b = append(append(b, byte(len(prefix))), prefix...)
	b = binary.LittleEndian.AppendUint32(b, ansPtr)
	b = binary.LittleEndian.AppendUint32(b, ansCap)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(k.kid)))
		b = append(b, k.kid...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(k.jwk)))
		b = append(b, k.jwk...)
	}
	return b
}

// jwsVerifyArgs encodes weft.jws_verify's arguments.
func jwsVerifyArgs(handle uint32, now time.Time, token string) []byte {
	b := binary.LittleEndian.AppendUint32([]byte{jwsVersion}, handle)
	b = binary.LittleEndian.AppendUint64(b, uint64(now.UnixNano()))
	return append(b, token...)
}

// jwsToken is a compact JWS of header and payload (JSON text) signed with
// key under alg (the header's alg may differ: sigAlg signs).
func jwsToken(t testing.TB, header, payload, sigAlg string, key any) string {
	t.Helper()
	input := tb64.EncodeToString([]byte(header)) + "." + tb64.EncodeToString([]byte(payload))
	return input + "." + tb64.EncodeToString(jwsSign(t, sigAlg, key, []byte(input)))
}

// testJWSKeys are the keys of the weft.jws_* tests: rsa1 (RS256 only),
// ec1 (P-256), hs1 (a secret).
func testJWSKeys(t testing.TB) []jwsKey {
	k := testVerifyKeys(t)
	return []jwsKey{{"rsa1", jwkOf(t, k.rsa, "RS256")}, {"ec1", jwkOf(t, k.p256, "")}, {"hs1", jwkOf(t, k.secret, "")}}
}

// TestForeignJWS checks tokens through proxy_call_foreign_function as a
// guest does: good ones of each kind, and forged, expired, not yet valid,
// wrong-alg and wrong-kid ones, each refused with its own code.
func TestForeignJWS(t *testing.T) {
	k := testVerifyKeys(t)
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers")}, Env{})
	h := newHostEnv(t, p, newStream("/"))
	st, res := h.callForeign(foreignJWSKeys, jwsKeysArgs(0, time.Minute, []string{"RS256", "ES256", "HS256"}, []string{"sub", "aud", "none"}, testJWSKeys(t)))
	if st != statusOK || len(res) != 4 || binary.LittleEndian.Uint32(res) == 0 {
		t.Fatalf("weft.jws_keys: status %d result %v", st, res)
	}
	handle := binary.LittleEndian.Uint32(res)
	now := time.Unix(1_800_000_000, 0)
	claims := func(extra string) string {
		return `{"sub":"user-1","aud":["api"],"exp":1800003600,"nbf":1799999940` + extra + `}`
	}
	rs := `{"alg":"RS256","kid":"rsa1"}`
	good := jwsToken(t, rs, claims(""), "RS256", k.rsa)
	for _, c := range []struct {
		name string
		tok  string
		want jws.Code
	}{
		{"rs256", good, jws.OK},
		{"es256", jwsToken(t, `{"alg":"ES256","kid":"ec1"}`, claims(""), "ES256", k.p256), jws.OK},
		{"hs256", jwsToken(t, `{"alg":"HS256","kid":"hs1"}`, claims(""), "HS256", k.secret), jws.OK},
		{"forged: another RSA key", jwsToken(t, rs, claims(""), "RS256", k.rsa2), jws.BadSignature},
		{"forged: payload swapped", good[:bytes.IndexByte([]byte(good), '.')+1] + tb64.EncodeToString([]byte(claims(`,"admin":true`))) + good[bytes.LastIndexByte([]byte(good), '.'):], jws.BadSignature},
		{"forged: HS256 with the RSA key's kid (alg confusion)", jwsToken(t, `{"alg":"HS256","kid":"rsa1"}`, claims(""), "HS256", k.secret), jws.NoKey},
		{"expired", jwsToken(t, rs, `{"exp":1799999940}`, "RS256", k.rsa), jws.Expired},
		{"expired, but within skew", jwsToken(t, rs, `{"exp":1799999941}`, "RS256", k.rsa), jws.OK},
		{"not yet valid", jwsToken(t, rs, `{"nbf":1800000061}`, "RS256", k.rsa), jws.NotYetValid},
		{"wrong alg: none", tb64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + tb64.EncodeToString([]byte(claims(""))) + ".", jws.AlgNotAllowed},
		{"wrong alg: not allowed", jwsToken(t, `{"alg":"RS512","kid":"rsa1"}`, claims(""), "RS512", k.rsa), jws.AlgNotAllowed},
		{"wrong alg: key restricted to another", jwsToken(t, `{"alg":"ES256","kid":"rsa1"}`, claims(""), "ES256", k.p256), jws.NoKey},
		{"wrong kid: unknown", jwsToken(t, `{"alg":"RS256","kid":"rsa9"}`, claims(""), "RS256", k.rsa), jws.NoKey},
		{"wrong kid: another key's", jwsToken(t, `{"alg":"ES256","kid":"ec1"}`, claims(""), "ES256", k.p384), jws.BadSignature},
		{"malformed", "a.b", jws.Malformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, res := h.callForeign(foreignJWSVerify, jwsVerifyArgs(handle, now, c.tok))
			if st != statusOK || len(res) == 0 || jws.Code(res[0]) != c.want {
				t.Fatalf("status %d result %v, want code %d", st, res, c.want)
			}
			if c.want != jws.OK {
				if len(res) != 1 {
					t.Errorf("a refusal carries %d bytes", len(res))
				}
				return
			}
			// flags, exp, then sub, aud and the absent "none".
			want := []byte{0, 1}
			want = binary.LittleEndian.AppendUint64(want, 0)
			want = binary.LittleEndian.AppendUint32(want, 0)
			want = binary.LittleEndian.AppendUint32(want, 8)
			want = append(want, `"user-1"`...)
			want = binary.LittleEndian.AppendUint32(want, 7)
			want = append(want, `["api"]`...)
			want = binary.LittleEndian.AppendUint32(want, 0xFFFFFFFF)
			if c.name == "expired, but within skew" {
				return // other claims
			}
			binary.LittleEndian.PutUint64(want[2:], 1800003600)
			if !bytes.Equal(res, want) {
				t.Errorf("result %q, want %q", res, want)
			}
		})
	}
	if st, _ := h.callForeign(foreignJWSVerify, jwsVerifyArgs(handle+1, now, good)); st != statusBadArgument {
		t.Errorf("an unknown handle: status %d", st)
	}
}

// TestForeignJWSRequestToken: given no token, weft.jws_verify reads it
// from the set's header of the current request, as the auth plugin does
// (first value, prefix in any case, spaces trimmed), and answers 7 when
// there is none; a token it found valid comes from its cache until its
// exp plus the skew.
func TestForeignJWSRequestToken(t *testing.T) {
	k := testVerifyKeys(t)
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers")}, Env{})
	now := time.Now()
	tok := jwsToken(t, `{"alg":"RS256","kid":"rsa1"}`, `{"sub":"u","exp":`+jsonInt(now.Add(time.Hour).Unix())+`}`, "RS256", k.rsa)
	register := func(h *hostEnv) uint32 {
		st, res := h.callForeign(foreignJWSKeys, jwsKeysArgsFrom(0, time.Minute, []string{"RS256"}, []string{"sub"}, 8, "authorization", "Bearer ", 0, 0, testJWSKeys(t)))
		if st != statusOK || len(res) != 4 {
			t.Fatalf("weft.jws_keys: %d %v", st, res)
		}
		return binary.LittleEndian.Uint32(res)
	}
	for _, c := range []struct {
		name  string
		value string // "" no header
		want  jws.Code
	}{
		{"bearer", "Bearer " + tok, jws.OK},
		{"prefix in another case, spaces", "bEARER   " + tok + "  ", jws.OK},
		{"no header", "", jws.NoToken},
		{"another scheme", "Basic " + tok, jws.NoToken},
		{"prefix only", "Bearer   ", jws.NoToken},
		{"forged", "Bearer " + tok[:len(tok)-4] + "AAAA", jws.BadSignature},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStream("/")
			if c.value != "" {
				s.Request.Header.Set("Authorization", c.value)
			}
			h := newHostEnv(t, p, s)
			handle := register(h)
			for i := range 2 { // the second from the cache when valid
				st, res := h.callForeign(foreignJWSVerify, jwsVerifyArgs(handle, time.Unix(0, 0), ""))
				if st != statusOK || len(res) == 0 || jws.Code(res[0]) != c.want {
					t.Fatalf("status %d result %v, want code %d", st, res, c.want)
				}
				if c.want == jws.OK && (!bytes.HasSuffix(res, []byte(`"u"`)) || res[1] != byte(1+2*i)) {
					t.Fatalf("call %d: result %q", i, res)
				}
			}
			// The cached token expires with its exp plus the skew.
			if c.want == jws.OK {
				st, res := h.callForeign(foreignJWSVerify, jwsVerifyArgs(handle, now.Add(time.Hour+time.Minute+time.Second), ""))
				if st != statusOK || jws.Code(res[0]) != jws.Expired {
					t.Fatalf("after exp: status %d result %v", st, res)
				}
			}
		})
	}
}

// TestForeignJWSAnswerBuffer: with an answer buffer the answer is
// written there (u32 length first) and the call returns no data; one too
// long for it is returned as usual; a buffer outside memory is refused.
func TestForeignJWSAnswerBuffer(t *testing.T) {
	k := testVerifyKeys(t)
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers")}, Env{})
	h := newHostEnv(t, p, newStream("/"))
	const ans = testArea + 60000 // past what callForeign uses
	keys := testJWSKeys(t)
	if st, _ := h.callForeign(foreignJWSKeys, jwsKeysArgsFrom(0, 0, []string{"RS256"}, nil, 0, "", "", h.v.mem.Size()-8, 16, keys)); st != statusBadArgument {
		t.Errorf("a buffer past the end of memory: status %d", st)
	}
	now := time.Unix(1_800_000_000, 0)
	tok := jwsToken(t, `{"alg":"RS256","kid":"rsa1"}`, `{"sub":"user-1"}`, "RS256", k.rsa)
	for _, c := range []struct {
		cap  uint32
		into bool
	}{{64, true}, {18, false}} { // the answer is 1+1+8+4+4+8 = 26 bytes
		st, res := h.callForeign(foreignJWSKeys, jwsKeysArgsFrom(0, 0, []string{"RS256"}, []string{"sub"}, 0, "", "", ans, c.cap, keys))
		if st != statusOK {
			t.Fatalf("weft.jws_keys: %d", st)
		}
		st, res = h.callForeign(foreignJWSVerify, jwsVerifyArgs(binary.LittleEndian.Uint32(res), now, tok))
		if st != statusOK || (len(res) == 0) != c.into {
			t.Fatalf("cap %d: status %d, %d bytes returned", c.cap, st, len(res))
		}
		if !c.into {
			continue
		}
		n, _ := h.v.mem.ReadUint32Le(ans)
		got, _ := h.v.mem.Read(ans+4, n)
		if n != 26 || got[0] != 0 || !bytes.HasSuffix(got, []byte(`"user-1"`)) {
			t.Errorf("answer buffer: %d bytes %q", n, got)
		}
	}
}

// TestForeignJWSCachedAllocs: a token from the set's cache, read from
// the request and answered into the guest's buffer, allocates nothing on
// the host (the proxy's zero-allocation path).
func TestForeignJWSCachedAllocs(t *testing.T) {
	k := testVerifyKeys(t)
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers")}, Env{})
	s := newStream("/")
	s.Request.Header.Set("Authorization", "Bearer "+jwsToken(t, `{"alg":"RS256","kid":"rsa1"}`, `{"sub":"user-1"}`, "RS256", k.rsa))
	h := newHostEnv(t, p, s)
	r := newForeignRegistry()
	res, st := r.jwsKeys(h.v, jwsKeysArgsFrom(0, time.Minute, []string{"RS256"}, []string{"sub"}, 8, "authorization", "Bearer ", testArea+60000, 256, testJWSKeys(t)))
	if st != statusOK {
		t.Fatalf("weft.jws_keys: %d", st)
	}
	args := jwsVerifyArgs(binary.LittleEndian.Uint32(res), time.Unix(0, 0), "")
	h.v.cur = h.f // the stream's callback
	defer func() { h.v.cur = nil }()
	if out, st := r.jwsVerify(h.v, args); st != statusOK || len(out) != 0 {
		t.Fatalf("first check: %d %v", st, out)
	}
	if n := testing.AllocsPerRun(100, func() {
		if out, st := r.jwsVerify(h.v, args); st != statusOK || len(out) != 0 {
			t.Fatalf("%d %v", st, out)
		}
	}); n != 0 {
		t.Errorf("%v allocations per cached check", n)
	}
}

// TestForeignJWSKeysRefuses: a set the host cannot hold as asked is
// refused whole, and a VM holds a bounded number of sets.
func TestForeignJWSKeysRefuses(t *testing.T) {
	k := testVerifyKeys(t)
	r := newForeignRegistry()
	v := &vm{}
	keys := testJWSKeys(t)
	weak := []jwsKey{{"w", jwkOf(t, k.rsaWeak, "")}}
	enc, _ := json.Marshal(map[string]string{"kty": "oct", "use": "enc", "k": tb64.EncodeToString(k.secret)})
	ok := jwsKeysArgs(0, time.Minute, []string{"RS256"}, nil, keys)
	for name, args := range map[string][]byte{
		"empty":          nil,
		"version 2":      append([]byte{2}, ok[1:]...),
		"trailing bytes": append(bytes.Clone(ok), 0),
		"truncated":      ok[:len(ok)-1],
		"alg none":       jwsKeysArgs(0, 0, []string{"none"}, nil, keys),
		"unknown alg":    jwsKeysArgs(0, 0, []string{"XS256"}, nil, keys),
		"no alg":         jwsKeysArgs(0, 0, nil, nil, keys),
		"no key":         jwsKeysArgs(0, 0, []string{"RS256"}, nil, nil),
		"weak RSA key":   jwsKeysArgs(0, 0, []string{"RS256"}, nil, append(keys, weak...)),
		"encryption key": jwsKeysArgs(0, 0, []string{"HS256"}, nil, []jwsKey{{"e", enc}}),
		"bad JSON key":   jwsKeysArgs(0, 0, []string{"HS256"}, nil, []jwsKey{{"e", []byte("{")}}),
		"negative skew":  jwsKeysArgs(0, -1, []string{"RS256"}, nil, keys),
	} {
		if res, st := r.jwsKeys(v, args); st != statusBadArgument || res != nil {
			t.Errorf("%s: status %d result %v", name, st, res)
		}
	}
	var handles []uint32
	for range maxJWSSets {
		res, st := r.jwsKeys(v, ok)
		if st != statusOK {
			t.Fatalf("set %d refused", len(handles)+1)
		}
		handles = append(handles, binary.LittleEndian.Uint32(res))
	}
	if _, st := r.jwsKeys(v, ok); st != statusBadArgument {
		t.Errorf("set %d: status %d", maxJWSSets+1, st)
	}
	// Releasing one makes room; the released handle is gone.
	res, st := r.jwsKeys(v, jwsKeysArgs(handles[0], time.Minute, []string{"RS256"}, nil, keys))
	if st != statusOK || binary.LittleEndian.Uint32(res) == handles[0] {
		t.Fatalf("replace: status %d result %v", st, res)
	}
	if _, st := r.jwsVerify(v, jwsVerifyArgs(handles[0], time.Now(), "a.b.c")); st != statusBadArgument {
		t.Errorf("a released handle: status %d", st)
	}
}

// FuzzForeignJWSArgs feeds weft.jws_keys and weft.jws_verify arbitrary
// arguments: they answer BadArgument or a well-formed result, never panic,
// and accept no token but one the test key signed.
func FuzzForeignJWSArgs(f *testing.F) {
	k := testVerifyKeys(f)
	keys := testJWSKeys(f)
	now := time.Unix(1_800_000_000, 0)
	good := jwsToken(f, `{"alg":"RS256","kid":"rsa1"}`, `{"sub":"u","exp":1800003600}`, "RS256", k.rsa)
	es := jwsToken(f, `{"alg":"ES256"}`, `{}`, "ES256", k.p256)
	signed := func(tok string) string { return tok[:strings.LastIndexByte(tok, '.')+1] }
	f.Add(jwsKeysArgs(0, time.Minute, []string{"RS256", "HS256"}, []string{"sub"}, keys), jwsVerifyArgs(1, now, good))
	f.Add(jwsKeysArgs(0, 0, []string{"ES256"}, nil, keys[1:2]), jwsVerifyArgs(2, now, es))
	f.Add([]byte{1, 0, 0, 0, 0}, []byte{1, 1, 0, 0, 0})
	f.Add([]byte{}, []byte{})
	r := newForeignRegistry()
	// Each run registers the test set (handle 1), then the fuzzed one
	// (handle 2 when accepted), then checks the fuzzed token.
	f.Fuzz(func(t *testing.T, keysArgs, verifyArgs []byte) {
		v := &vm{}
		if res, st := r.jwsKeys(v, jwsKeysArgs(0, time.Minute, []string{"RS256", "HS256"}, []string{"sub"}, keys)); st != statusOK || binary.LittleEndian.Uint32(res) != 1 {
			t.Fatalf("the test set: %d %v", st, res)
		}
		res, st := r.jwsKeys(v, keysArgs)
		switch {
		case st == statusBadArgument && res == nil:
		case st == statusOK && len(res) == 4 && binary.LittleEndian.Uint32(res) != 0:
		default:
			t.Fatalf("weft.jws_keys: status %d result %v", st, res)
		}
		res, st = r.jwsVerify(v, verifyArgs)
		switch {
		case st == statusBadArgument && res == nil:
			return
		case st != statusOK || len(res) == 0 || res[0] > byte(jws.NoToken):
			t.Fatalf("weft.jws_verify: status %d result %v", st, res)
		case res[0] != byte(jws.OK):
			if len(res) != 1 {
				t.Fatalf("a refusal with %d bytes", len(res))
			}
			return
		}
		// Accepted: the fuzzer cannot sign, so the signing input is a
		// seed's.
		tok := string(verifyArgs[13:])
		if i := strings.LastIndexByte(tok, '.'); i < 0 || tok[:i+1] != signed(good) && tok[:i+1] != signed(es) {
			t.Fatalf("accepted %q", tok)
		}
		if len(res) < 14 || res[1] > 3 {
			t.Fatalf("result %v", res)
		}
	})
}

// BenchmarkForeignJWS is weft.jws_verify's work for a new RS256 token on a
// registered set (no guest involved): decode, parse, verify, find claims.
func BenchmarkForeignJWS(b *testing.B) {
	k := testVerifyKeys(b)
	r := newForeignRegistry()
	v := &vm{}
	if _, st := r.jwsKeys(v, jwsKeysArgs(0, time.Minute, []string{"RS256"}, []string{"iss", "aud", "sub"}, testJWSKeys(b))); st != statusOK {
		b.Fatal(st)
	}
	now := time.Now()
	tok := jwsToken(b, `{"alg":"RS256","kid":"rsa1","typ":"JWT"}`, `{"iss":"https://idp.test","aud":"api","sub":"user-1","exp":`+
		jsonInt(now.Add(time.Hour).Unix())+`,"nbf":`+jsonInt(now.Add(-time.Minute).Unix())+`,"iat":`+jsonInt(now.Unix())+`}`, "RS256", k.rsa)
	args := jwsVerifyArgs(1, now, tok)
	b.ReportAllocs()
	for b.Loop() {
		if res, st := r.jwsVerify(v, args); st != statusOK || res[0] != 0 {
			b.Fatal(st, res)
		}
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }
