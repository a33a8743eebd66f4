// Package demo runs a whole Weft mesh on loopback in one process: small
// demo services, a sidecar in front of them from an embedded config, and a
// short tour of what to try. It backs `weft demo`; it is an example, not a
// library.
package demo
