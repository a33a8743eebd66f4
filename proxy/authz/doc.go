// Package authz owns native authorization on the request path: a
// listener's allow/deny rules (peer SPIFFE principal with namespace
// wildcards, JWT request principal from a header an auth filter sets,
// method, exact/prefix/glob path, headers, destination port) compiled once
// per snapshot into a Policy whose Check allocates nothing, with deny-wins
// evaluation, a per-listener default, a denial counter per rule, and a
// dry-run policy whose would-be denials are only counted (and reported to
// the caller, which logs them).
//
// It must not terminate TLS or verify certificates (the listener and
// proxy/identity do: Check trusts filter.Stream.TLS), verify JWTs (a filter
// does), or write responses itself beyond the 403 it describes.
package authz
