// Package conformance is the Proxy-Wasm conformance suite of Weft's Wasm
// host (package proxy/wasm). It holds tests only.
//
// Every test builds a real filter in the test run — with the public
// Proxy-Wasm Go SDK (github.com/proxy-wasm/proxy-wasm-go-sdk), with
// AssemblyScript's @solo-io/proxy-runtime, or in C over sdk/c/proxy_wasm.h
// (twins of some Go guests, held to the same assertions), sources under
// proxy/wasm/testdata/guests — loads it with wasm.Runtime.Load, and sends
// requests through a small stand-in of the data plane (driver_test.go): a
// real fasthttp listener on 127.0.0.1 whose handler runs the filter's
// callbacks in pipeline order around a real upstream fasthttp server. Tests
// assert only what a client or an upstream observes (status, headers, bodies,
// requests seen upstream) and the metrics the Runtime exports.
//
// It must not test host internals, mock the host or the network, or assert
// on timing; it owns no production code.
package conformance
