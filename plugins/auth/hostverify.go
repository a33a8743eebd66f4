package main

import (
	"encoding/binary"
	"encoding/json"

	"github.com/weftmesh/weft/sdk"
)

// hostVerifyFunc is Weft's foreign function that checks a JWS signature
// natively (docs/wasm.md, "Foreign functions"). Big-number arithmetic in
// the VM costs milliseconds per RSA or ECDSA check under the host's
// callback deadline; the host does it in tens of microseconds.
const hostVerifyFunc = "weft.verify_signature"

// Argument encoding of weft.verify_signature: version, key format, then
// alg, key, signing input and signature, each u32 little-endian length
// first.
const (
	hostVerifyVersion = 1
	hostKeyFormatJWK  = 0
)

// hostVerifier sends signature checks to the host when it offers
// weft.verify_signature, and remembers (per VM) when it does not, so the
// filter still runs unmodified in hosts without it (Envoy).
type hostVerifier struct {
	// state: 0 not tried yet, hostOffered, hostAbsent.
	state int8
	buf   []byte // reused arguments
	// host and vm count the checks done by the host and in the VM.
	host, vm sdk.Counter
}

const (
	hostOffered = 1
	hostAbsent  = -1
)

// verify checks sig over signed with k through the host. done is false
// when the host cannot do it (absent, or it refuses the key): the caller
// checks in the VM.
func (h *hostVerifier) verify(k *key, alg, signed string, sig []byte) (valid, done bool) {
	if h.state == hostAbsent || k.jwk == nil {
		return false, false
	}
	b := append(h.buf[:0], hostVerifyVersion, hostKeyFormatJWK)
	b = appendField(b, alg)
	b = appendField(b, k.jwk)
	b = appendField(b, signed)
	b = appendField(b, sig)
	h.buf = b
	out, err := sdk.CallForeignFunction(hostVerifyFunc, b)
	switch {
	case err == nil && len(out) == 1 && out[0] <= 1:
		h.state = hostOffered
		h.host.Inc()
		return out[0] == 1, true
	case sdk.IsForeignFunctionMissing(err):
		h.state = hostAbsent
		sdk.Infof("auth: the host does not offer %s: signatures are checked in the VM", hostVerifyFunc)
	default:
		// The host refused these arguments (e.g. a key it finds too weak)
		// or answered oddly: the VM decides, as without the host.
		sdk.Debugf("auth: %s: %v (%d bytes): checking in the VM", hostVerifyFunc, err, len(out))
	}
	return false, false
}

// appendField appends a u32 little-endian length and f.
func appendField[T string | []byte](b []byte, f T) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// hostJWK is the key as the host receives it: the public members only (no
// kid, so one key under several kids parses once in the host's cache).
func hostJWK(j jwk) []byte {
	j.Kid, j.Use = "", ""
	b, err := json.Marshal(j)
	if err != nil {
		return nil
	}
	return b
}
