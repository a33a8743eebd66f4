package jws

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/weftmesh/weft/sdk/jsonscan"
)

// Code is the outcome of Verify. The guest turns each into its own error
// (plugins/auth/jwt.go), so the values are part of weft.jws_verify's
// contract: never renumber them.
type Code uint8

// Outcomes, in the order the checks run.
const (
	OK            Code = iota
	Malformed          // not three base64url parts, a header or payload that is not a JSON object, a bad alg/kid/exp/nbf type
	AlgNotAllowed      // the header's alg is not one the set allows
	NoKey              // no key of the set fits the kid and alg
	BadSignature       // no fitting key verifies the signature
	Expired            // exp + skew is not after now
	NotYetValid        // nbf is after now + skew
	// NoToken is weft.jws_verify's answer when it reads the token from a
	// request header and there is none (Verify never returns it).
	NoToken
)

// Key is one parsed public key (or HMAC secret) of a set.
type Key interface {
	// Fits reports whether the key can check alg (its type, curve and
	// its own alg restriction).
	Fits(alg string) bool
	// Verify checks sig over input under alg; an error means the key
	// cannot check it, which Verify treats as a bad signature.
	Verify(alg string, input, sig []byte) (bool, error)
}

// Limits of a Set.
const (
	MaxAlgs   = 16
	MaxClaims = 32
	MaxKeys   = 256
)

// Set is a key set with the rules tokens are checked by. It is immutable
// once built, but its scratch buffers belong to one caller at a time (one
// VM: a VM's calls are serialised).
type Set struct {
	algs   []string
	skew   time.Duration
	claims []string
	keys   []Key
	kids   []string // kids[i] is keys[i]'s kid ("" none)

	// Reused per Verify: decoded header, signature and payload, and the
	// members found in them.
	hdr, sig, payload []byte
	members           []jsonscan.Member

	cache *tokenCache // nil: none (SetCache)
}

// NewSet returns a set of keys (kids[i] names keys[i], "" for none)
// allowing algs, with skew on exp and nbf, whose Verify returns the values
// of claims.
func NewSet(algs []string, skew time.Duration, claims []string, kids []string, keys []Key) (*Set, error) {
	switch {
	case len(algs) == 0 || len(algs) > MaxAlgs:
		return nil, fmt.Errorf("%d algorithms (1..%d)", len(algs), MaxAlgs)
	case len(claims) > MaxClaims:
		return nil, fmt.Errorf("%d claims (at most %d)", len(claims), MaxClaims)
	case len(keys) == 0 || len(keys) > MaxKeys || len(kids) != len(keys):
		return nil, fmt.Errorf("%d keys (1..%d)", len(keys), MaxKeys)
	case skew < 0:
		return nil, errors.New("negative clock skew")
	}
	for _, a := range algs {
		if a == "" || a == "none" {
			return nil, fmt.Errorf("algorithm %q", a)
		}
	}
	return &Set{algs: algs, skew: skew, claims: claims, keys: keys, kids: kids}, nil
}

// Claims are the names whose values Verify returns, in order.
func (s *Set) Claims() []string { return s.claims }

// Result is a valid token's exp and the raw JSON values of the set's
// claims (nil: absent). The values point into the set's buffers: use them
// before the next Verify.
type Result struct {
	// Cached is set when the token came from the set's cache (no
	// signature was checked for it now).
	Cached  bool
	HasExp  bool
	ExpSec  int64
	ExpNsec int64
	Values  [][]byte
}

// b64 is the guest's decoding (base64url without padding).
var b64 = base64.RawURLEncoding

// Verify checks token at now. On OK, r holds exp and the claims' values.
func (s *Set) Verify(token []byte, now time.Time, r *Result) Code {
	h64, rest, ok := bytes.Cut(token, []byte{'.'})
	if !ok {
		return Malformed
	}
	p64, s64, ok := bytes.Cut(rest, []byte{'.'})
	if !ok || bytes.IndexByte(s64, '.') >= 0 {
		return Malformed
	}
	var err error
	if s.hdr, err = decode(s.hdr, h64); err != nil {
		return Malformed
	}
	alg, kid, ok := s.header()
	if !ok {
		return Malformed
	}
	if !s.allows(alg) {
		return AlgNotAllowed
	}
	if s.sig, err = decode(s.sig, s64); err != nil {
		return Malformed
	}
	if c := s.verify(alg, kid, token[:len(h64)+1+len(p64)]); c != OK {
		return c
	}
	if s.payload, err = decode(s.payload, p64); err != nil {
		return Malformed
	}
	ms, ok := jsonscan.Object(s.payload, s.members[:0])
	s.members = ms[:0]
	if !ok {
		return Malformed
	}
	exp, hasExp, ok := numericDate(ms, "exp")
	if !ok {
		return Malformed
	}
	if hasExp && !now.Before(exp.Add(s.skew)) {
		return Expired
	}
	nbf, hasNbf, ok := numericDate(ms, "nbf")
	if !ok {
		return Malformed
	}
	if hasNbf && now.Add(s.skew).Before(nbf) {
		return NotYetValid
	}
	*r = Result{HasExp: hasExp, Values: r.Values[:0]}
	if hasExp {
		r.ExpSec, r.ExpNsec = exp.Unix(), int64(exp.Nanosecond())
	}
	for _, c := range s.claims {
		v, _ := jsonscan.Lookup(ms, c)
		r.Values = append(r.Values, v)
	}
	return OK
}

// header reads alg and kid (strings when present; the last of a repeated
// name) from the decoded JOSE header.
func (s *Set) header() (alg, kid string, ok bool) {
	var buf [8]jsonscan.Member
	ms, ok := jsonscan.Object(s.hdr, buf[:0])
	if !ok {
		return "", "", false
	}
	for _, m := range ms {
		switch m.Name {
		case "alg":
			if alg, ok = jsonscan.String(m.Raw); !ok {
				return "", "", false
			}
		case "kid":
			if kid, ok = jsonscan.String(m.Raw); !ok {
				return "", "", false
			}
		}
	}
	return alg, kid, true
}

func (s *Set) allows(alg string) bool {
	for _, a := range s.algs {
		if a == alg {
			return true
		}
	}
	return false
}

// verify checks the signature with the key kid names, or with each key
// fitting alg when there is no kid.
func (s *Set) verify(alg, kid string, signed []byte) Code {
	if kid != "" {
		// The last key of a kid, as the guest's map keeps it.
		for i := len(s.keys) - 1; i >= 0; i-- {
			if s.kids[i] != kid {
				continue
			}
			if !s.keys[i].Fits(alg) {
				return NoKey
			}
			if ok, err := s.keys[i].Verify(alg, signed, s.sig); !ok || err != nil {
				return BadSignature
			}
			return OK
		}
		return NoKey
	}
	tried := false
	for _, k := range s.keys {
		if !k.Fits(alg) {
			continue
		}
		tried = true
		if ok, err := k.Verify(alg, signed, s.sig); ok && err == nil {
			return OK
		}
	}
	if !tried {
		return NoKey
	}
	return BadSignature
}

// decode decodes base64url src into dst's storage.
func decode(dst, src []byte) ([]byte, error) {
	n := b64.DecodedLen(len(src))
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	n, err := b64.Decode(dst[:cap(dst)], src)
	return dst[:n], err
}

// numericDate reads a NumericDate claim (ok false: present but not a
// number, or out of range).
func numericDate(ms []jsonscan.Member, name string) (t time.Time, present, ok bool) {
	raw, found := jsonscan.Lookup(ms, name)
	if !found {
		return time.Time{}, false, true
	}
	t, ok = jsonscan.NumericDate(raw)
	return t, true, ok
}
