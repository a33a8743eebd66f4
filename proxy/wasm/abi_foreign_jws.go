package wasm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/weftmesh/weft/proxy/wasm/jws"
)

// weft.jws_keys and weft.jws_verify check a whole compact JWS (a JWT) in
// the host: base64url, the JOSE header, the algorithm allow-list, the key
// by kid, the signature, exp and nbf. A Go guest pays tens of microseconds
// to decode and scan a token under the callback deadline's checks; here it
// pays one call and reads back the few claims it asked for, already found.
// The rules are the auth plugin's (package jws says how they are kept the
// same); iss and aud stay with the guest.
//
// weft.jws_keys hands the host a key set once (at configure, and when the
// keys change). Arguments (integers little-endian):
//
//	u8  version: 1
//	u32 handle of a set of this VM to release (0: none)
//	u64 clock skew on exp and nbf, nanoseconds
//	u8  n, then n × (u8 len, alg)        algorithms allowed (no "none")
//	u8  n, then n × (u8 len, claim)      claims weft.jws_verify returns
//	u32 cache entries (0: none; at most jws.MaxCacheEntries are kept)
//	u8  len, header      request header weft.jws_verify reads the token
//	                     from when given none ("": always given)
//	u8  len, prefix      before the token in that header, matched without
//	                     case ("Bearer "; "": none)
//	u32 answer pointer, u32 answer capacity   a buffer in the guest's
//	                     memory where weft.jws_verify writes its answer
//	                     (u32 length, then the answer) instead of
//	                     returning it, when it fits: no call into the guest
//	                     to allocate (0, 0: none)
//	u32 n, then n × (u32 len, kid; u32 len, JWK)   the keys, in order
//
// and nothing after. Result: u32 handle (never 0). BadArgument when the
// arguments are malformed or over a bound, an algorithm is unknown, a key
// does not parse or is too weak (as weft.verify_signature refuses it), or
// the VM holds maxJWSSets sets already.
//
// weft.jws_verify checks one token. Arguments: u8 version 1, u32 handle,
// i64 now (Unix nanoseconds; 0: the host's clock), then the token (the
// rest, at most maxJWSToken bytes). The answer goes into the set's answer
// buffer when it has one and the answer fits (the call then returns no
// data), else it is returned. With no token, the host reads it from
// the set's header of the current stream's request: the first value, less
// the prefix, spaces trimmed, as the auth plugin reads it; none there
// answers code 7. A token found valid before (the set's cache) is not
// checked again until its exp plus the skew. Result: u8 code (jws.Code: 0
// valid, 1 malformed, 2 algorithm not allowed, 3 no key, 4 bad signature,
// 5 expired, 6 not yet valid, 7 no token); when
// valid, also u8 flags (1: the token has exp; 2: from the cache, no
// signature checked now), i64 exp seconds, u32 exp
// nanoseconds, and for each claim of the set in order u32 len and its raw
// JSON value, or u32 0xFFFFFFFF when the payload has no such member.
// BadArgument for malformed arguments or an unknown handle.
const (
	foreignJWSKeys   = "weft.jws_keys"
	foreignJWSVerify = "weft.jws_verify"
)

// Bounds of weft.jws_keys and weft.jws_verify.
const (
	jwsVersion  = 1
	maxJWSSets  = 16
	maxJWSToken = 1 << 20
	maxJWSKid   = 1 << 10
)

// jwsState is a VM's key sets. Only the VM's own calls use it, serialised
// by v.mu, so it needs no lock.
type jwsState struct {
	sets   map[uint32]*jwsSet
	next   uint32
	result jws.Result
	out    []byte
}

// jwsSet is a set of weft.jws_keys and where its tokens are read from.
type jwsSet struct {
	*jws.Set
	header, prefix []byte
	// ansPtr and ansCap are the guest's answer buffer (ansCap 0: none).
	ansPtr, ansCap uint32
}

// jwsKeys is weft.jws_keys.
func (r *foreignRegistry) jwsKeys(v *vm, args []byte) ([]byte, uint32) {
	release, set, err := r.parseJWSKeys(args)
	if err != nil || set.ansCap > 0 && (set.ansCap < 4 || v.mem == nil || !v.writable(set.ansPtr, set.ansCap)) {
		return nil, statusBadArgument
	}
	st := &v.jws
	if release != 0 {
		delete(st.sets, release)
	}
	if len(st.sets) >= maxJWSSets {
		return nil, statusBadArgument
	}
	if st.sets == nil {
		st.sets = make(map[uint32]*jwsSet)
	}
	st.next++
	if st.next == 0 {
		st.next = 1
	}
	st.sets[st.next] = set
	return binary.LittleEndian.AppendUint32(st.out[:0], st.next), statusOK
}

// jwsReader reads weft.jws_keys' arguments; the first error sticks.
type jwsReader struct {
	b   []byte
	err error
}

var errJWSArgs = errors.New("malformed weft.jws_keys arguments")

func (rd *jwsReader) take(n uint64) []byte {
	if rd.err != nil || n > uint64(len(rd.b)) {
		rd.err = errJWSArgs
		return nil
	}
	f := rd.b[:n]
	rd.b = rd.b[n:]
	return f
}

func (rd *jwsReader) u8() uint8 {
	if f := rd.take(1); f != nil {
		return f[0]
	}
	return 0
}

func (rd *jwsReader) u32() uint32 {
	if f := rd.take(4); f != nil {
		return binary.LittleEndian.Uint32(f)
	}
	return 0
}

func (rd *jwsReader) u64() uint64 {
	if f := rd.take(8); f != nil {
		return binary.LittleEndian.Uint64(f)
	}
	return 0
}

// strings reads n strings, each after a length of lenBytes (1 or 4), each
// at most max bytes; they are copied (args view guest memory).
func (rd *jwsReader) strings(n int, lenBytes, max uint32) []string {
	out := make([]string, 0, n)
	for range n {
		var l uint32
		if lenBytes == 1 {
			l = uint32(rd.u8())
		} else {
			l = rd.u32()
		}
		if l > max {
			rd.err = errJWSArgs
		}
		f := rd.take(uint64(l))
		if rd.err != nil {
			return nil
		}
		out = append(out, string(f))
	}
	return out
}

func (r *foreignRegistry) parseJWSKeys(args []byte) (uint32, *jwsSet, error) {
	rd := jwsReader{b: args}
	if rd.u8() != jwsVersion {
		return 0, nil, errors.New("bad version")
	}
	release := rd.u32()
	skew := rd.u64()
	algs := rd.strings(int(rd.u8()), 1, maxVerifyAlg)
	claims := rd.strings(int(rd.u8()), 1, math.MaxUint8)
	entries := rd.u32()
	src := rd.strings(2, 1, math.MaxUint8) // header, prefix
	ansPtr, ansCap := rd.u32(), rd.u32()
	n := rd.u32()
	if rd.err != nil {
		return 0, nil, rd.err
	}
	if skew > math.MaxInt64 || len(algs) > jws.MaxAlgs || len(claims) > jws.MaxClaims || n == 0 || n > jws.MaxKeys {
		return 0, nil, errJWSArgs
	}
	for _, a := range algs {
		if _, ok := jwsAlgs[a]; !ok {
			return 0, nil, errors.New("unknown alg")
		}
	}
	kids := make([]string, 0, n)
	keys := make([]jws.Key, 0, n)
	for range n {
		kid := rd.strings(1, 4, maxJWSKid)
		l := rd.u32()
		if l > maxVerifyKey {
			rd.err = errJWSArgs
		}
		raw := rd.take(uint64(l))
		if rd.err != nil {
			return 0, nil, rd.err
		}
		k, err := r.keys.get(keyFormatJWK, raw)
		if err != nil {
			return 0, nil, err
		}
		kids = append(kids, kid[0])
		keys = append(keys, k)
	}
	if len(rd.b) != 0 {
		return 0, nil, errors.New("trailing bytes")
	}
	set, err := jws.NewSet(algs, time.Duration(skew), claims, kids, keys)
	if err != nil {
		return 0, nil, err
	}
	set.SetCache(int(min(entries, jws.MaxCacheEntries)))
	return release, &jwsSet{Set: set, header: []byte(src[0]), prefix: []byte(src[1]), ansPtr: ansPtr, ansCap: ansCap}, nil
}

// jwsVerify is weft.jws_verify.
func (r *foreignRegistry) jwsVerify(v *vm, args []byte) ([]byte, uint32) {
	if len(args) < 1+4+8 || args[0] != jwsVersion || len(args)-13 > maxJWSToken {
		return nil, statusBadArgument
	}
	st := &v.jws
	set := st.sets[binary.LittleEndian.Uint32(args[1:])]
	if set == nil {
		return nil, statusBadArgument
	}
	now := time.Now()
	if ns := int64(binary.LittleEndian.Uint64(args[5:])); ns != 0 {
		now = time.Unix(0, ns)
	}
	token := args[13:]
	// out is a u32 length (for the answer buffer) and the answer.
	out := append(st.out[:0], 0, 0, 0, 0)
	code := jws.NoToken
	res := &st.result
	if len(token) == 0 {
		token, _ = v.requestToken(set)
	}
	if len(token) > 0 {
		code = set.VerifyCached(token, now, res)
	}
	out = append(out, byte(code))
	if code == jws.OK {
		var flags byte
		if res.HasExp {
			flags = 1
		}
		if res.Cached {
			flags |= 2
		}
		out = append(out, flags)
		out = binary.LittleEndian.AppendUint64(out, uint64(res.ExpSec))
		out = binary.LittleEndian.AppendUint32(out, uint32(res.ExpNsec))
		for _, val := range res.Values {
			if val == nil {
				out = binary.LittleEndian.AppendUint32(out, propertyMissing)
				continue
			}
			out = binary.LittleEndian.AppendUint32(out, uint32(len(val)))
			out = append(out, val...)
		}
	}
	st.out = out[:0]
	binary.LittleEndian.PutUint32(out, uint32(len(out)-4))
	if uint64(len(out)) <= uint64(set.ansCap) {
		if !v.mem.Write(set.ansPtr, out) {
			return nil, statusInvalidMemoryAccess
		}
		return nil, statusOK
	}
	return out[4:], statusOK
}

// requestToken reads the token of the current stream's request from the
// set's header: its first value, less the prefix (any case), spaces
// trimmed. A set without a header, or a call outside a stream, finds none.
func (v *vm) requestToken(set *jwsSet) ([]byte, bool) {
	if len(set.header) == 0 || v.cur == nil {
		return nil, false
	}
	h, ok := v.headerMap(mapRequestHeaders)
	if !ok {
		return nil, false
	}
	val, ok := h.get(set.header)
	if !ok {
		return nil, false
	}
	if p := set.prefix; len(p) > 0 {
		if len(val) < len(p) || !bytes.EqualFold(val[:len(p)], p) {
			return nil, false
		}
		val = val[len(p):]
	}
	val = bytes.TrimSpace(val)
	return val, len(val) > 0
}

// Fits implements jws.Key: k has the type (and curve) alg needs, and its
// own alg, when it names one, is alg.
func (k *verifyKey) Fits(alg string) bool {
	a, ok := jwsAlgs[alg]
	if !ok || k.alg != "" && k.alg != alg {
		return false
	}
	switch a.family {
	case famPKCS1, famPSS:
		return k.rsa != nil
	case famECDSA:
		return k.ec != nil && k.ec.Curve == a.curve
	case famEdDSA:
		return k.ed != nil
	case famHMAC:
		return k.secret != nil && len(k.secret) >= a.hash.Size()
	}
	return false
}

// Verify implements jws.Key.
func (k *verifyKey) Verify(alg string, input, sig []byte) (bool, error) {
	a, ok := jwsAlgs[alg]
	if !ok {
		return false, errors.New("unknown alg")
	}
	return k.verify(alg, a, input, sig)
}
