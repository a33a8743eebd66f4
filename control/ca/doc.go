// Package ca owns the mesh certificate authority of `weft control`: the
// root (generated on first start and kept in the data directory, or given
// by the operator as files), an optional intermediate, signing sidecars'
// CSRs into short-lived X.509 SVIDs whose URI SAN is
// spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT, the trust bundle
// (the current root plus retired roots during their overlap after a
// rotation), and the per-node join tokens that authenticate CSRs.
//
// It must not decide whose identity a node has (the server derives it from
// the node's Sidecar resource and passes it in), serve HTTP, or ever see a
// sidecar's private key: it signs CSRs only.
package ca
