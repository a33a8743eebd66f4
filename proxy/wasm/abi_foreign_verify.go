package wasm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"math/big"
	"sync"
	"sync/atomic"
)

// weft.verify_signature checks a JWS signature natively, for guests whose
// own big-number arithmetic is slow under the callback deadline's
// termination checks.
//
// Arguments (all integers little-endian):
//
//	u8  version: 1
//	u8  key format: 0 JWK (a JSON object), 1 DER (SubjectPublicKeyInfo, or
//	    PKCS #1 RSAPublicKey), 2 raw secret (HS* only)
//	u32 len, alg             RS256 RS384 RS512 PS256 PS384 PS512 ES256
//	                         ES384 ES512 EdDSA HS256 HS384 HS512
//	u32 len, key
//	u32 len, signing input   (JWS: base64url(header) "." base64url(payload))
//	u32 len, signature       (raw: ES* is r||s, as in a JWS)
//
// and nothing after. The result is one byte: 1 the signature is valid, 0 it
// is not. Malformed arguments, an unknown version, format or algorithm, a
// key that does not parse, is too weak or does not fit the algorithm answer
// BadArgument (2) with no data.
const foreignVerifySignature = "weft.verify_signature"

// Argument bounds of weft.verify_signature.
const (
	verifyVersion     = 1
	keyFormatJWK      = 0
	keyFormatDER      = 1
	keyFormatRaw      = 2
	maxVerifyAlg      = 16
	maxVerifyKey      = 16 << 10
	maxVerifyInput    = 1 << 20
	maxVerifySig      = 1024 // RSA 8192 bits
	minRSABits        = 2048
	maxRSABits        = 8192
	maxRSAExponent    = 1<<31 - 1
	verifyHeaderBytes = 2
)

var (
	resultValid   = []byte{1}
	resultInvalid = []byte{0}
)

type algFamily uint8

const (
	famPKCS1 algFamily = iota + 1
	famPSS
	famECDSA
	famEdDSA
	famHMAC
)

// jwsAlg describes one JWS algorithm.
type jwsAlg struct {
	family algFamily
	hash   crypto.Hash
	curve  elliptic.Curve // ES*
}

// jwsAlgs are the algorithms weft.verify_signature knows (RFC 7518, RFC 8037).
var jwsAlgs = map[string]jwsAlg{
	"RS256": {famPKCS1, crypto.SHA256, nil},
	"RS384": {famPKCS1, crypto.SHA384, nil},
	"RS512": {famPKCS1, crypto.SHA512, nil},
	"PS256": {famPSS, crypto.SHA256, nil},
	"PS384": {famPSS, crypto.SHA384, nil},
	"PS512": {famPSS, crypto.SHA512, nil},
	"ES256": {famECDSA, crypto.SHA256, elliptic.P256()},
	"ES384": {famECDSA, crypto.SHA384, elliptic.P384()},
	"ES512": {famECDSA, crypto.SHA512, elliptic.P521()},
	"EdDSA": {famEdDSA, 0, nil},
	"HS256": {famHMAC, crypto.SHA256, nil},
	"HS384": {famHMAC, crypto.SHA384, nil},
	"HS512": {famHMAC, crypto.SHA512, nil},
}

// verifySignature is weft.verify_signature.
func (r *foreignRegistry) verifySignature(_ *vm, args []byte) ([]byte, uint32) {
	ok, err := r.verify(args)
	if err != nil {
		return nil, statusBadArgument
	}
	if ok {
		return resultValid, statusOK
	}
	return resultInvalid, statusOK
}

// verify decodes args and checks the signature. An error means the
// arguments are unusable; a bad signature is (false, nil).
func (r *foreignRegistry) verify(args []byte) (bool, error) {
	if len(args) < verifyHeaderBytes || args[0] != verifyVersion {
		return false, errors.New("bad version")
	}
	format := args[1]
	rest := args[verifyHeaderBytes:]
	var fields [4][]byte
	for i, limit := range [4]int{maxVerifyAlg, maxVerifyKey, maxVerifyInput, maxVerifySig} {
		if len(rest) < 4 {
			return false, errors.New("truncated")
		}
		n := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(limit) || uint64(n) > uint64(len(rest)) {
			return false, errors.New("field too long")
		}
		fields[i], rest = rest[:n], rest[n:]
	}
	if len(rest) != 0 {
		return false, errors.New("trailing bytes")
	}
	alg, ok := jwsAlgs[string(fields[0])]
	if !ok {
		return false, errors.New("unknown alg")
	}
	switch {
	case format > keyFormatRaw:
		return false, errors.New("unknown key format")
	case format == keyFormatRaw && alg.family != famHMAC, format == keyFormatDER && alg.family == famHMAC:
		return false, errors.New("key format does not fit alg")
	}
	k, err := r.keys.get(format, fields[1])
	if err != nil {
		return false, err
	}
	return k.verify(string(fields[0]), alg, fields[2], fields[3])
}

// verifyKey is a parsed key; it is immutable once cached.
type verifyKey struct {
	format byte
	raw    []byte // the key bytes, compared on a hit
	alg    string // the JWK's "alg" ("" when it does not restrict)
	rsa    *rsa.PublicKey
	ec     *ecdsa.PublicKey
	ed     ed25519.PublicKey
	secret []byte
	used   atomic.Bool // second chance for eviction
}

// verify checks sig over input with k under alg (named algName).
func (k *verifyKey) verify(algName string, alg jwsAlg, input, sig []byte) (bool, error) {
	if k.alg != "" && k.alg != algName {
		return false, errors.New("key is for another alg")
	}
	var sum [sha512.Size]byte
	var digest []byte
	switch alg.hash {
	case crypto.SHA256:
		s := sha256.Sum256(input)
		digest = append(sum[:0], s[:]...)
	case crypto.SHA384:
		s := sha512.Sum384(input)
		digest = append(sum[:0], s[:]...)
	case crypto.SHA512:
		s := sha512.Sum512(input)
		digest = append(sum[:0], s[:]...)
	}
	switch alg.family {
	case famPKCS1, famPSS:
		if k.rsa == nil {
			return false, errors.New("not an RSA key")
		}
		if len(sig) != k.rsa.Size() {
			return false, nil
		}
		if alg.family == famPKCS1 {
			return rsa.VerifyPKCS1v15(k.rsa, alg.hash, digest, sig) == nil, nil
		}
		return rsa.VerifyPSS(k.rsa, alg.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: alg.hash}) == nil, nil
	case famECDSA:
		if k.ec == nil || k.ec.Curve != alg.curve {
			return false, errors.New("not a key on the alg's curve")
		}
		size := (alg.curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false, nil
		}
		rr := new(big.Int).SetBytes(sig[:size])
		ss := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k.ec, digest, rr, ss), nil
	case famEdDSA:
		if k.ed == nil {
			return false, errors.New("not an Ed25519 key")
		}
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k.ed, input, sig), nil
	case famHMAC:
		if k.secret == nil {
			return false, errors.New("not a secret key")
		}
		if len(k.secret) < alg.hash.Size() {
			return false, errors.New("secret shorter than the hash")
		}
		var newHash func() hash.Hash
		switch alg.hash {
		case crypto.SHA256:
			newHash = sha256.New
		case crypto.SHA384:
			newHash = sha512.New384
		default:
			newHash = sha512.New
		}
		m := hmac.New(newHash, k.secret)
		m.Write(input)
		mac := m.Sum(sum[:0])
		return len(sig) == len(mac) && subtle.ConstantTimeCompare(mac, sig) == 1, nil
	}
	return false, errors.New("unknown alg family")
}

// keyCache holds parsed keys by a hash of their bytes, shared by every VM
// of a runtime. A hit takes a read lock and allocates nothing; when full, a
// miss evicts a key not used since the last sweep (a clock, roughly LRU).
type keyCache struct {
	seed maphash.Seed
	max  int
	mu   sync.RWMutex
	m    map[uint64]*verifyKey // guarded by mu
}

func newKeyCache(max int) *keyCache {
	return &keyCache{seed: maphash.MakeSeed(), max: max, m: make(map[uint64]*verifyKey)}
}

// get returns the parsed key of (format, raw), parsing and caching it on a
// miss.
func (c *keyCache) get(format byte, raw []byte) (*verifyKey, error) {
	h := maphash.Bytes(c.seed, raw) ^ uint64(format)
	c.mu.RLock()
	k := c.m[h]
	c.mu.RUnlock()
	if k != nil && k.format == format && bytes.Equal(k.raw, raw) {
		if !k.used.Load() {
			k.used.Store(true)
		}
		return k, nil
	}
	k, err := parseVerifyKey(format, raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[h]; !ok && len(c.m) >= c.max {
		c.evictLocked()
	}
	c.m[h] = k
	return k, nil
}

// evictLocked drops one key: the first not used since the previous sweep,
// clearing the marks it passes; any key when all were used.
func (c *keyCache) evictLocked() {
	var first uint64
	seen := false
	for h, k := range c.m {
		if !seen {
			first, seen = h, true
		}
		if !k.used.Swap(false) {
			delete(c.m, h)
			return
		}
	}
	if seen {
		delete(c.m, first)
	}
}

// len returns the number of cached keys.
func (c *keyCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// parseVerifyKey parses a key; raw is copied (it views guest memory).
func parseVerifyKey(format byte, raw []byte) (*verifyKey, error) {
	if len(raw) == 0 {
		return nil, errors.New("empty key")
	}
	k := &verifyKey{format: format, raw: bytes.Clone(raw)}
	var err error
	switch format {
	case keyFormatJWK:
		err = k.parseJWK(k.raw)
	case keyFormatDER:
		err = k.parseDER(k.raw)
	case keyFormatRaw:
		k.secret = k.raw
	default:
		err = fmt.Errorf("key format %d", format)
	}
	if err != nil {
		return nil, err
	}
	if k.rsa != nil {
		if err := checkRSA(k.rsa); err != nil {
			return nil, err
		}
	}
	return k, nil
}

var jwkB64 = base64.RawURLEncoding.Strict()

// jwkJSON is the subset of a JWK (RFC 7517, 7518, 8037) a verifier needs.
type jwkJSON struct {
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`
}

func (k *verifyKey) parseJWK(raw []byte) error {
	var j jwkJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return fmt.Errorf("jwk: %w", err)
	}
	if j.Use != "" && j.Use != "sig" {
		return fmt.Errorf("jwk: use %q is not sig", j.Use)
	}
	if j.Alg != "" {
		if _, ok := jwsAlgs[j.Alg]; !ok {
			return fmt.Errorf("jwk: alg %q", j.Alg)
		}
	}
	k.alg = j.Alg
	switch j.Kty {
	case "RSA":
		n, err1 := jwkB64.DecodeString(j.N)
		e, err2 := jwkB64.DecodeString(j.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return errors.New("jwk: bad RSA n or e")
		}
		var exp uint64
		for _, b := range e {
			exp = exp<<8 | uint64(b)
		}
		if exp > maxRSAExponent {
			return errors.New("jwk: RSA exponent too large")
		}
		k.rsa = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)}
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return fmt.Errorf("jwk: curve %q", j.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err1 := jwkB64.DecodeString(j.X)
		y, err2 := jwkB64.DecodeString(j.Y)
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return errors.New("jwk: bad EC point")
		}
		pt := make([]byte, 0, 1+2*size)
		pt = append(append(append(pt, 4), x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, pt) // checks the point is on the curve
		if err != nil {
			return fmt.Errorf("jwk: %w", err)
		}
		k.ec = pub
	case "OKP":
		if j.Crv != "Ed25519" {
			return fmt.Errorf("jwk: OKP curve %q", j.Crv)
		}
		x, err := jwkB64.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return errors.New("jwk: bad Ed25519 x")
		}
		k.ed = ed25519.PublicKey(x)
	case "oct":
		s, err := jwkB64.DecodeString(j.K)
		if err != nil || len(s) == 0 {
			return errors.New("jwk: bad oct k")
		}
		k.secret = s
	default:
		return fmt.Errorf("jwk: kty %q", j.Kty)
	}
	return nil
}

func (k *verifyKey) parseDER(raw []byte) error {
	pub, err := x509.ParsePKIXPublicKey(raw)
	if err != nil {
		rk, err2 := x509.ParsePKCS1PublicKey(raw)
		if err2 != nil {
			return fmt.Errorf("der: %w", err)
		}
		pub = rk
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		k.rsa = p
	case *ecdsa.PublicKey:
		k.ec = p
	case ed25519.PublicKey:
		k.ed = p
	default:
		return fmt.Errorf("der: %T keys are not supported", pub)
	}
	return nil
}

// checkRSA refuses weak, oversized or malformed RSA keys.
func checkRSA(k *rsa.PublicKey) error {
	bits := k.N.BitLen()
	if bits < minRSABits || bits > maxRSABits {
		return fmt.Errorf("RSA key of %d bits: %d..%d required", bits, minRSABits, maxRSABits)
	}
	if k.E < 3 || k.E&1 == 0 {
		return fmt.Errorf("RSA exponent %d", k.E)
	}
	return nil
}
