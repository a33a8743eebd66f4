package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// key is one verification key of a key set.
type key struct {
	kid string
	alg string // "" when the JWK does not restrict it
	rsa *rsa.PublicKey
	ec  *ecdsa.PublicKey
	hs  []byte
	// jwk is the key in the form weft.verify_signature takes.
	jwk []byte
}

// keySet is a parsed JWKS.
type keySet struct {
	keys  []*key
	byKid map[string]*key
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	K   string `json:"k,omitempty"`
}

var b64 = base64.RawURLEncoding

// parseJWKS reads a JWKS document. Keys of unknown types or for encryption
// (use "enc") are skipped; a set with no usable key is an error.
func parseJWKS(raw []byte) (*keySet, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	ks := &keySet{byKid: make(map[string]*key)}
	for i, j := range doc.Keys {
		if j.Use == "enc" {
			continue
		}
		k, err := parseJWK(j)
		if err != nil {
			return nil, fmt.Errorf("jwks: key %d (kid %q): %w", i, j.Kid, err)
		}
		if k == nil {
			continue
		}
		ks.keys = append(ks.keys, k)
		if k.kid != "" {
			ks.byKid[k.kid] = k
		}
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("jwks: no usable signing key")
	}
	return ks, nil
}

func parseJWK(j jwk) (*key, error) {
	k := &key{kid: j.Kid, alg: j.Alg}
	switch j.Kty {
	case "RSA":
		n, err := b64.DecodeString(j.N)
		if err != nil || len(n) == 0 {
			return nil, errors.New("bad modulus n")
		}
		e, err := b64.DecodeString(j.E)
		if err != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad exponent e")
		}
		var exp int
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		if len(n)*8 < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: at least 2048 required", len(n)*8)
		}
		k.rsa = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
	case "EC":
		if j.Crv != "P-256" {
			return nil, fmt.Errorf("curve %q: only P-256 is supported", j.Crv)
		}
		x, err1 := b64.DecodeString(j.X)
		y, err2 := b64.DecodeString(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("bad P-256 point")
		}
		// ecdsa.ParseUncompressedPublicKey checks the point is on the curve.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("bad P-256 point: %w", err)
		}
		k.ec = pub
	case "oct":
		s, err := b64.DecodeString(j.K)
		if err != nil || len(s) < 32 {
			return nil, errors.New("bad oct key k (at least 32 bytes)")
		}
		k.hs = s
	default:
		return nil, nil
	}
	k.jwk = hostJWK(j)
	return k, nil
}

// fits reports whether k can verify alg.
func (k *key) fits(alg string) bool {
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
