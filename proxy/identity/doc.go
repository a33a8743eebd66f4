// Package identity owns a sidecar's workload identity on the data plane:
// SPIFFE IDs (parsing, the ns/sa form, wildcard patterns), the current
// X.509 SVID and trust bundle held behind an atomic pointer, the TLS
// configurations that serve and dial mTLS from them (certificates are read
// per handshake, so a rotation never drops a connection), peer
// verification against the bundle, and the rotation loop that renews the
// SVID at half its lifetime through a Signer.
//
// It must not talk to the control plane itself (control/client provides a
// Signer), decide authorization (proxy/authz does), or keep a private key
// anywhere but in memory: the key is generated here and never leaves.
package identity
