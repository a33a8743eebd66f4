package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math/big"
	"strconv"
	"strings"
	"time"
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

// claims are a validated token's claims.
type claims map[string]any

// header is a JOSE header.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// validator checks tokens against one compiled config.
type validator struct {
	algs      map[string]bool
	issuer    string
	audiences []string
	skew      time.Duration
}

// validate checks token's form, signature (with keys) and time and
// identity claims at now, and returns its claims.
func (v *validator) validate(token string, keys *keySet, now time.Time) (claims, time.Time, error) {
	h64, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, time.Time{}, errMalformed
	}
	p64, s64, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(s64, '.') >= 0 {
		return nil, time.Time{}, errMalformed
	}
	hb, err := b64.DecodeString(h64)
	if err != nil {
		return nil, time.Time{}, errMalformed
	}
	var hdr header
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, time.Time{}, errMalformed
	}
	if !v.algs[hdr.Alg] {
		return nil, time.Time{}, errAlgorithm
	}
	sig, err := b64.DecodeString(s64)
	if err != nil {
		return nil, time.Time{}, errMalformed
	}
	if keys == nil {
		return nil, time.Time{}, errNoKeys
	}
	signed := token[:len(h64)+1+len(p64)]
	if err := verify(hdr, signed, sig, keys); err != nil {
		return nil, time.Time{}, err
	}
	pb, err := b64.DecodeString(p64)
	if err != nil {
		return nil, time.Time{}, errMalformed
	}
	dec := json.NewDecoder(bytes.NewReader(pb))
	dec.UseNumber()
	var c claims
	if err := dec.Decode(&c); err != nil || c == nil {
		return nil, time.Time{}, errMalformed
	}
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
	if v.issuer != "" {
		if iss, _ := c["iss"].(string); iss != v.issuer {
			return nil, time.Time{}, errIssuer
		}
	}
	if len(v.audiences) > 0 && !c.hasAudience(v.audiences) {
		return nil, time.Time{}, errAudience
	}
	if !hasExp {
		exp = time.Time{}
	}
	return c, exp, nil
}

// verify checks sig over signed with the key the header names (by kid), or
// with each key fitting the algorithm when there is no kid.
func verify(h header, signed string, sig []byte, keys *keySet) error {
	if h.Kid != "" {
		k := keys.byKid[h.Kid]
		if k == nil || !k.fits(h.Alg) {
			return errNoKey
		}
		return verifyWith(k, h.Alg, signed, sig)
	}
	tried := false
	for _, k := range keys.keys {
		if !k.fits(h.Alg) {
			continue
		}
		tried = true
		if verifyWith(k, h.Alg, signed, sig) == nil {
			return nil
		}
	}
	if !tried {
		return errNoKey
	}
	return errSignature
}

func verifyWith(k *key, alg, signed string, sig []byte) error {
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
	v, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false, errMalformed
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false, errMalformed
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true, nil
}

// hasAudience reports whether aud (a string or an array) names one of want.
func (c claims) hasAudience(want []string) bool {
	match := func(a string) bool {
		for _, w := range want {
			if a == w {
				return true
			}
		}
		return false
	}
	switch aud := c["aud"].(type) {
	case string:
		return match(aud)
	case []any:
		for _, a := range aud {
			if s, ok := a.(string); ok && match(s) {
				return true
			}
		}
	}
	return false
}

// headerValue renders a claim for a request header: strings as is, numbers
// and booleans in JSON form, arrays of strings comma-joined; objects are
// skipped.
func (c claims) headerValue(name string) (string, bool) {
	switch v := c[name].(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return strconv.FormatBool(v), true
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), true
	}
	return "", false
}
