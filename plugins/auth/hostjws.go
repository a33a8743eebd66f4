package main

import (
	"bytes"
	"encoding/binary"
	"slices"
	"time"

	"github.com/weftmesh/weft/sdk"

	"github.com/weftmesh/weft/sdk/jsonscan"
)

// Weft's foreign functions that check a whole token in the host
// (docs/wasm.md, "weft.jws_keys and weft.jws_verify"): base64url, the JOSE
// header, the algorithm allow-list, the key by kid, the signature, exp and
// nbf, by the same rules and in the same order as validator.validate. The
// guest then decodes nothing: it gets back the few claims it uses (iss,
// aud, claims_to_headers) and checks iss and aud itself.
const (
	hostJWSKeysFunc   = "weft.jws_keys"
	hostJWSVerifyFunc = "weft.jws_verify"
	hostJWSVersion    = 1
)

// Outcomes of weft.jws_verify, in its order of checks.
var hostJWSErrors = [...]error{1: errMalformed, 2: errAlgorithm, 3: errNoKey, 4: errSignature, 5: errExpired, 6: errNotYetValid}

// hostJWS checks tokens through the host when it offers weft.jws_verify,
// and remembers (per VM) when it does not; the validator then does the
// work in the VM, so the filter runs unmodified on other hosts (Envoy).
type hostJWS struct {
	state int8 // 0 not tried yet, hostOffered, hostAbsent
	// keys is the key set the host holds as handle (0: the host refused
	// that set; the VM checks its tokens).
	keys   *keySet
	handle uint32
	// claims are the claims the host returns, in order.
	claims []string
	// cacheSize, header and prefix go to the host with the keys: its
	// cache of valid tokens, and where it reads a request's token.
	cacheSize      int
	header, prefix string
	buf            []byte
	// reqArgs are checkRequest's arguments for handle: version, handle,
	// 0 for the host's clock, no token (the host reads the request's).
	reqArgs [1 + 4 + 8]byte
	// reqClaims holds the claims of checkRequest's token (not kept).
	reqClaims claims
	// last is checkRequest's last answer for a valid token from the
	// host's cache (a copy), and what read made of it (lastClaims are
	// views of last): the memo of the cached path.
	last       []byte
	lastClaims claims
	lastErr    error
	lastDone   bool
	// answer is where the host writes weft.jws_verify's answers (u32
	// length, then the answer): no call into the VM to allocate them.
	answer []byte
	// sigs counts the signatures the host checked (with
	// weft.verify_signature's), tokens the tokens it checked whole.
	sigs, tokens *sdk.Counter
}

// newHostJWS returns the host path of a validator with claims (each
// once) to read back.
func newHostJWS(cfg *compiled, claims []string, sigs, tokens *sdk.Counter) *hostJWS {
	var cs []string
	for _, c := range claims {
		if !slices.Contains(cs, c) {
			cs = append(cs, c)
		}
	}
	return &hostJWS{claims: cs, sigs: sigs, tokens: tokens, cacheSize: max(cfg.cacheSize, 0), header: cfg.tokenHdr, prefix: cfg.prefix}
}

// checkRequest has the host read the current request's token and check
// it with keys, through the host's cache of valid tokens: no token crosses
// into the VM. present is false when the request has no token. done is
// false when the host cannot: the caller reads the token and checks it in
// the VM.
func (h *hostJWS) checkRequest(v *validator, keys *keySet) (cl claims, present bool, err error, done bool) {
	if h.state == hostAbsent || !h.register(v, keys) {
		return nil, false, nil, false
	}
	out, callErr := h.call(h.reqArgs[:])
	if callErr == nil && len(out) == 1 && out[0] == hostJWSNoToken {
		return nil, false, nil, true
	}
	if callErr == nil && len(out) > 1 && out[0] == 0 && out[1]&2 != 0 {
		// A valid token from the host's cache. The outcome of read is a
		// function of the answer's bytes alone (the claims; the issuer
		// and audiences checked are this plugin's), so the same answer
		// as the last one (the same client's token, request after
		// request) gets the same outcome without decoding it again.
		if h.lastDone && bytes.Equal(out, h.last) {
			return h.lastClaims, true, h.lastErr, true
		}
		h.last = append(h.last[:0], out...)
		cl, _, err, done = h.read(v, h.last, nil, h.lastClaims[:0])
		h.lastClaims, h.lastErr, h.lastDone = cl, err, done
		if !done {
			h.last = h.last[:0]
		}
		return cl, true, err, done
	}
	cl, _, err, done = h.read(v, out, callErr, h.reqClaims[:0])
	if cl != nil {
		h.reqClaims = cl[:0]
	}
	return cl, true, err, done
}

// hostJWSNoToken is weft.jws_verify's code for a request without a token.
const hostJWSNoToken = 7

// validate checks token with keys at now through the host. done is false
// when the host cannot (absent, or it refused the key set or the call):
// the caller checks in the VM.
func (h *hostJWS) validate(v *validator, token string, keys *keySet, now time.Time) (cl claims, exp time.Time, err error, done bool) {
	if h.state == hostAbsent || !h.register(v, keys) {
		return nil, time.Time{}, nil, false
	}
	b := append(h.buf[:0], hostJWSVersion)
	b = binary.LittleEndian.AppendUint32(b, h.handle)
	b = binary.LittleEndian.AppendUint64(b, uint64(now.UnixNano()))
	b = append(b, token...)
	h.buf = b
	out, callErr := h.call(b)
	// The claims are kept (the token cache): not views of the answer
	// buffer, which the next call overwrites.
	out = bytes.Clone(out)
	return h.read(v, out, callErr, make(claims, 0, len(h.claims)))
}

// answerSize is the answer buffer's size: a token's claims for headers are
// short; a longer answer is returned the usual way.
const answerSize = 1024

// call calls weft.jws_verify with args and returns its answer: from the
// answer buffer when the host wrote it there, a view valid until the next
// call.
func (h *hostJWS) call(args []byte) ([]byte, error) {
	out, err := sdk.CallForeignFunction(hostJWSVerifyFunc, args)
	if err != nil || len(out) > 0 {
		return out, err
	}
	if len(h.answer) < 4 {
		return nil, sdk.StatusSerializationFailure
	}
	n := binary.LittleEndian.Uint32(h.answer)
	if uint64(n) > uint64(len(h.answer)-4) {
		return nil, sdk.StatusSerializationFailure
	}
	return h.answer[4 : 4+n : 4+n], nil
}

// read reads weft.jws_verify's answer; the claims are appended to cl.
func (h *hostJWS) read(v *validator, out []byte, callErr error, cl claims) (_ claims, exp time.Time, err error, done bool) {
	if callErr != nil || len(out) == 0 || int(out[0]) >= len(hostJWSErrors) {
		sdk.Debugf("auth: %s: %v (%d bytes): checking in the VM", hostJWSVerifyFunc, callErr, len(out))
		return nil, time.Time{}, nil, false
	}
	if code := out[0]; code != 0 {
		h.tokens.Inc()
		if code >= 4 { // the signature was checked
			h.sigs.Inc()
		}
		return nil, time.Time{}, hostJWSErrors[code], true
	}
	cl, exp, ok := h.parseResult(out[1:], cl)
	if len(out) > 1 && out[1]&2 == 0 { // not from the host's cache
		h.tokens.Inc()
		h.sigs.Inc()
	}
	if !ok {
		// A host that answers what it was not asked is not trusted.
		return nil, time.Time{}, errMalformed, true
	}
	if err := v.checkIdentity(cl); err != nil {
		return nil, time.Time{}, err, true
	}
	return cl, exp, nil, true
}

// parseResult reads a valid token's exp and claims. The values are views
// of out, which the host filled in a buffer of the guest's own.
func (h *hostJWS) parseResult(out []byte, cl claims) (claims, time.Time, bool) {
	if len(out) < 1+8+4 || out[0] > 3 {
		return nil, time.Time{}, false
	}
	var exp time.Time
	if out[0]&1 != 0 {
		exp = time.Unix(int64(binary.LittleEndian.Uint64(out[1:])), int64(binary.LittleEndian.Uint32(out[9:])))
	}
	rest := out[13:]
	for _, name := range h.claims {
		if len(rest) < 4 {
			return nil, time.Time{}, false
		}
		n := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if n == 0xFFFFFFFF {
			continue
		}
		if uint64(n) > uint64(len(rest)) {
			return nil, time.Time{}, false
		}
		cl = append(cl, jsonscan.Member{Name: name, Raw: rest[:n:n]})
		rest = rest[n:]
	}
	return cl, exp, len(rest) == 0
}

// register hands keys to the host when it does not hold them yet, and
// reports whether it does.
func (h *hostJWS) register(v *validator, keys *keySet) bool {
	if h.keys == keys {
		return h.handle != 0
	}
	b := append(h.buf[:0], hostJWSVersion)
	b = binary.LittleEndian.AppendUint32(b, h.handle) // released
	b = binary.LittleEndian.AppendUint64(b, uint64(v.skew))
	algs := make([]string, 0, len(v.algs))
	for a, ok := range v.algs {
		if ok {
			algs = append(algs, a)
		}
	}
	slices.Sort(algs)
	b = append(b, byte(len(algs)))
	for _, a := range algs {
		b = append(append(b, byte(len(a))), a...)
	}
	b = append(b, byte(len(h.claims)))
	for _, c := range h.claims {
		b = append(append(b, byte(len(c))), c...)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(h.cacheSize))
	b = append(append(b, byte(len(h.header))), h.header...)
	b = append(append(b, byte(len(h.prefix))), h.prefix...)
	if h.answer == nil {
		h.answer = make([]byte, answerSize)
	}
	ptr, n := bufferAddress(h.answer)
	b = binary.LittleEndian.AppendUint32(b, ptr)
	b = binary.LittleEndian.AppendUint32(b, n)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(keys.keys)))
	usable := len(h.claims) <= 255 && len(algs) > 0 && len(h.header) <= 255 && len(h.prefix) <= 255
	for _, k := range keys.keys {
		if k.jwk == nil || len(k.kid) > 1024 {
			usable = false
			break
		}
		b = appendField(b, k.kid)
		b = appendField(b, k.jwk)
	}
	for _, c := range h.claims {
		usable = usable && len(c) <= 255
	}
	h.buf = b
	h.keys, h.handle = keys, 0
	if !usable {
		return false
	}
	out, err := sdk.CallForeignFunction(hostJWSKeysFunc, b)
	switch {
	case err == nil && len(out) == 4:
		h.state = hostOffered
		h.handle = binary.LittleEndian.Uint32(out)
		h.reqArgs = [1 + 4 + 8]byte{0: hostJWSVersion}
		binary.LittleEndian.PutUint32(h.reqArgs[1:], h.handle)
	case sdk.IsForeignFunctionMissing(err):
		h.state = hostAbsent
		sdk.Infof("auth: the host does not offer %s: tokens are decoded in the VM", hostJWSKeysFunc)
	default:
		// The host refused the set (e.g. a key it finds too weak): the VM
		// checks this set's tokens.
		sdk.Infof("auth: %s refused the key set: %v: tokens are decoded in the VM", hostJWSKeysFunc, err)
	}
	return h.handle != 0
}
