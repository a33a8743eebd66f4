// Package abi is the Go guest SDK's boundary with the Proxy-Wasm host: the
// `env.proxy_*` host calls the SDK makes, and the table of guest callbacks
// (Exports) the SDK fills in.
//
// Under GOOS=wasip1 the host calls are `//go:wasmimport` functions (and the
// package sdk exports the callbacks with `//go:wasmexport`). On any other
// platform the same functions forward to a Host set with SetHost, so the SDK
// and filters written with it run under plain `go test` against an emulated
// host (package sdk/sdktest).
//
// It owns only the calling convention: pointer and length passing, the
// allocate-and-return protocol for data coming back from the host. It must
// not hold SDK state or interpret what it passes.
package abi
