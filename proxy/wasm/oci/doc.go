// Package oci pulls Wasm filter modules from OCI registries, pushes them,
// and signs and verifies them in cosign's format.
//
// A module reference is an ordinary image reference
// (registry.example.com/team/authz:v3, ...@sha256:<manifest digest>, or
// both: a tag pinned to a digest, refused if the tag has moved). Two
// manifest layouts are accepted, the ones registries hold Wasm plugins in
// today:
//
//   - the Wasm artifact layout: one layer of media type application/wasm or
//     application/vnd.module.wasm.content.layer.v1+wasm holding the module;
//   - the image layout: one tar (optionally gzip) layer holding plugin.wasm.
//
// Anything else (an index, several layers, other media types) is refused
// with an error that names what the manifest holds.
//
// Pulled modules are cached on disk by the sha256 of the module itself,
// with the tag → manifest digest → module mapping beside them, so a cached
// module costs no network round trip: with PullPolicy IfNotPresent a
// reference seen before is served from the cache; with Always a tag is
// resolved again (one HEAD request) and the blob fetched only if its digest
// is new. A reference by digest is immutable and never fetched twice.
//
// Signatures follow cosign's key-based scheme (the "<alg>-<hex>.sig" tag
// beside the image, a simple-signing payload naming the manifest digest,
// an ECDSA P-256 signature over it in the layer annotation), so a module
// signed with `cosign sign --key` verifies here against the operator's
// public key, and `weft filter sign` writes signatures cosign verifies.
//
// The package uses go-containerregistry for the registry protocol (auth,
// token exchange, retries); it owns only the layout rules, the cache and the
// signature format.
package oci
