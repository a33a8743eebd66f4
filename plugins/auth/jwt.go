package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"math/big"
	"strings"
	"time"
	"unsafe"

	"github.com/weftmesh/weft/sdk/jsonscan"
)

// Validation failures. They are shown to clients (error_description) and
// logged, so they never include the token.
var (
	errMalformed   = errors.New("malformed token")
	errAlgorithm   = errors.New("algorithm not allowed")
	errNoKey       = errors.New("no key matches the token")
	errSignature   = errors.New("bad signature")
	errExpired     = errors.New("token expired")
	errNotYetValid = errors.New("token not yet valid")
	errIssuer      = errors.New("wrong issuer")
	errAudience    = errors.New("wrong audience")
	errNoKeys      = errors.New("signing keys unavailable")
)

// claims are a validated token's claims: the payload's members, values
// raw (decoded on use). A repeated name counts once, the last one, as with
// encoding/json.
type claims []jsonscan.Member

// get returns the raw value of claim name.
func (c claims) get(name string) ([]byte, bool) {
	return jsonscan.Lookup(c, name)
}

// header is a JOSE header.
type header struct {
	Alg string
	Kid string
}

// parseHeader reads alg and kid from a JOSE header (both strings when
// present).
func parseHeader(b []byte) (header, bool) {
	var buf [8]jsonscan.Member
	ms, ok := jsonscan.Object(b, buf[:0])
	if !ok {
		return header{}, false
	}
	var h header
	for _, m := range ms {
		switch m.Name {
		case "alg":
			if h.Alg, ok = jsonscan.String(m.Raw); !ok {
				return header{}, false
			}
		case "kid":
			if h.Kid, ok = jsonscan.String(m.Raw); !ok {
				return header{}, false
			}
		}
	}
	return h, true
}

// validator checks tokens against one compiled config. It belongs to one
// VM (its header cache is not safe for concurrent use).
type validator struct {
	algs      map[string]bool
	issuer    string
	audiences []string
	skew      time.Duration
	// host checks signatures through the host when it can (nil: always
	// in the VM).
	host *hostVerifier
	// jws checks whole tokens through the host when it can (nil: never).
	jws *hostJWS
	// headers remembers parsed JOSE headers by their encoded form: a
	// signer's tokens share a few headers, and parsing costs more in the
	// VM than a lookup.
	headers map[string]header
	// sigBuf holds the decoded signature of the token being checked.
	sigBuf []byte
}

// maxHeaders bounds validator.headers; when full it starts over.
const maxHeaders = 64

// header decodes and parses the encoded JOSE header h64, through the
// cache of headers already seen.
func (v *validator) header(h64 string) (header, bool) {
	if h, ok := v.headers[h64]; ok {
		return h, true
	}
	hb, err := b64.DecodeString(h64)
	if err != nil {
		return header{}, false
	}
	h, ok := parseHeader(hb)
	if !ok {
		return header{}, false
	}
	if v.headers == nil || len(v.headers) >= maxHeaders {
		v.headers = make(map[string]header)
	}
	v.headers[h64] = h
	return h, true
}

// validate checks token's form, signature (with keys) and time and
// identity claims at now, and returns its claims.
func (v *validator) validate(token string, keys *keySet, now time.Time) (claims, time.Time, error) {
	if v.jws != nil && keys != nil {
		if cl, exp, err, done := v.jws.validate(v, token, keys, now); done {
			return cl, exp, err
		}
	}
	h64, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, time.Time{}, errMalformed
	}
	p64, s64, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(s64, '.') >= 0 {
		return nil, time.Time{}, errMalformed
	}
	hdr, ok := v.header(h64)
	if !ok {
		return nil, time.Time{}, errMalformed
	}
	if !v.algs[hdr.Alg] {
		return nil, time.Time{}, errAlgorithm
	}
	// The signature is not kept: decode it into the validator's buffer.
	if n := b64.DecodedLen(len(s64)); cap(v.sigBuf) < n {
		v.sigBuf = make([]byte, n)
	}
	sn, err := b64.Decode(v.sigBuf[:cap(v.sigBuf)], unsafe.Slice(unsafe.StringData(s64), len(s64)))
	if err != nil {
		return nil, time.Time{}, errMalformed
	}
	sig := v.sigBuf[:sn]
	if keys == nil {
		return nil, time.Time{}, errNoKeys
	}
	signed := token[:len(h64)+1+len(p64)]
	if err := verify(hdr, signed, sig, keys, v.host); err != nil {
		return nil, time.Time{}, err
	}
	pb, err := b64.DecodeString(p64)
	if err != nil {
		return nil, time.Time{}, errMalformed
	}
	// The claims are kept (in the token cache): one allocation for a
	// typical payload's members instead of the append's doublings.
	ms, ok := jsonscan.Object(pb, make([]jsonscan.Member, 0, 16))
	if !ok {
		return nil, time.Time{}, errMalformed
	}
	c := claims(ms)
	exp, hasExp, err := c.time("exp")
	if err != nil {
		return nil, time.Time{}, err
	}
	if hasExp && !now.Before(exp.Add(v.skew)) {
		return nil, time.Time{}, errExpired
	}
	if nbf, ok, err := c.time("nbf"); err != nil {
		return nil, time.Time{}, err
	} else if ok && now.Add(v.skew).Before(nbf) {
		return nil, time.Time{}, errNotYetValid
	}
	if err := v.checkIdentity(c); err != nil {
		return nil, time.Time{}, err
	}
	if !hasExp {
		exp = time.Time{}
	}
	return c, exp, nil
}

// checkIdentity checks the iss and aud claims of a token whose signature
// and times are good.
func (v *validator) checkIdentity(c claims) error {
	if v.issuer != "" {
		if raw, _ := c.get("iss"); !rawEquals(raw, v.issuer) {
			return errIssuer
		}
	}
	if len(v.audiences) > 0 && !c.hasAudience(v.audiences) {
		return errAudience
	}
	return nil
}

// verify checks sig over signed with the key the header names (by kid), or
// with each key fitting the algorithm when there is no kid; through hv
// when it is set and the host can.
func verify(h header, signed string, sig []byte, keys *keySet, hv *hostVerifier) error {
	if h.Kid != "" {
		k := keys.byKid[h.Kid]
		if k == nil || !k.fits(h.Alg) {
			return errNoKey
		}
		return verifyWith(k, h.Alg, signed, sig, hv)
	}
	tried := false
	for _, k := range keys.keys {
		if !k.fits(h.Alg) {
			continue
		}
		tried = true
		if verifyWith(k, h.Alg, signed, sig, hv) == nil {
			return nil
		}
	}
	if !tried {
		return errNoKey
	}
	return errSignature
}

func verifyWith(k *key, alg, signed string, sig []byte, hv *hostVerifier) error {
	if hv != nil {
		if valid, done := hv.verify(k, alg, signed, sig); done {
			if !valid {
				return errSignature
			}
			return nil
		}
		hv.vm.Inc()
	}
	sum := sha256.Sum256([]byte(signed))
	switch alg {
	case "RS256":
		if rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, sum[:], sig) != nil {
			return errSignature
		}
	case "ES256":
		if len(sig) != 64 {
			return errSignature
		}
		r := new(big.Int).SetBytes(sig[:32])
		s := new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(k.ec, sum[:], r, s) {
			return errSignature
		}
	case "HS256":
		m := hmac.New(sha256.New, k.hs)
		m.Write([]byte(signed))
		if !hmac.Equal(m.Sum(nil), sig) {
			return errSignature
		}
	default:
		return errAlgorithm
	}
	return nil
}

// time reads a NumericDate claim.
func (c claims) time(name string) (time.Time, bool, error) {
	raw, ok := c.get(name)
	if !ok {
		return time.Time{}, false, nil
	}
	t, ok := jsonscan.NumericDate(raw)
	if !ok {
		return time.Time{}, false, errMalformed
	}
	return t, true, nil
}

// hasAudience reports whether aud (a string or an array) names one of want.
func (c claims) hasAudience(want []string) bool {
	match := func(raw []byte) bool {
		for _, w := range want {
			if rawEquals(raw, w) {
				return true
			}
		}
		return false
	}
	raw, _ := c.get("aud")
	if len(raw) > 0 && raw[0] == '"' {
		return match(raw)
	}
	found := false
	jsonscan.Array(raw, func(e []byte) bool {
		found = match(e)
		return !found
	})
	return found
}

// rawEquals reports whether raw is the JSON string s.
func rawEquals(raw []byte, s string) bool {
	if len(raw) == len(s)+2 && raw[0] == '"' && string(raw[1:len(raw)-1]) == s {
		return true // the common case: no escapes
	}
	v, ok := jsonscan.String(raw)
	return ok && v == s
}

// headerValue renders a claim for a request header: strings as is, numbers
// and booleans in JSON form, arrays of strings comma-joined; objects and
// null are skipped.
func (c claims) headerValue(name string) (string, bool) {
	raw, ok := c.get(name)
	if !ok || len(raw) == 0 {
		return "", false
	}
	switch b := raw[0]; {
	case b == '"':
		return jsonscan.String(raw)
	case b == 't' || b == 'f' || b == '-' || b >= '0' && b <= '9':
		return string(raw), true
	case b == '[':
		var parts []string
		all := true
		jsonscan.Array(raw, func(e []byte) bool {
			s, ok := jsonscan.String(e)
			if !ok {
				all = false
				return false
			}
			parts = append(parts, s)
			return true
		})
		if !all {
			return "", false
		}
		return strings.Join(parts, ","), true
	}
	return "", false
}
