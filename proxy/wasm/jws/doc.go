// Package jws checks a JWS in compact serialization (a JWT) natively: it
// decodes the header and payload, pins the algorithm, picks the key by kid,
// checks the signature, and exp and nbf against a clock skew, and returns
// the raw values of the claims its caller asked for.
//
// It serves the Weft foreign function weft.jws_verify
// (proxy/wasm/abi_foreign_jws.go), so the auth plugin's Go guest does no
// base64 or JSON work per new token. Its rules are the guest's
// (plugins/auth/jwt.go), check for check and in the same order, so a token
// gets the same answer whichever side checks it; both read the JSON with
// sdk/jsonscan (NumericDates included), so they agree there by
// construction. It does not
// parse keys nor do the cryptography: a Key does (the host's parsed-key
// cache), and it does not check iss or aud, which stay with the caller.
package jws
