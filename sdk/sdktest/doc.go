//go:build !wasip1

// Package sdktest is an emulated Proxy-Wasm host for unit tests of filters
// written with package sdk: the filter's Go code runs natively under plain
// `go test` (no Wasm), and the test drives its callbacks one by one —
// request headers, bodies, call-out answers, ticks — and inspects what it
// did: edited headers, local responses, resumes, logs, metrics, shared data.
//
// The emulation follows Weft's host closely but is not the real thing:
// behaviour that matters end to end (pausing a real stream, failure
// policies, memory limits) is tested with sdk/filtertest, which loads the
// built .wasm in the real host.
//
// Only one Host is active at a time (the SDK's state is per process, as it
// is per VM), so tests using it must not run in parallel.
//
// It owns the emulation only; it must not be imported by filter code.
package sdktest
