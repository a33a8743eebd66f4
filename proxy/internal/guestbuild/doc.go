// Package guestbuild builds the Proxy-Wasm test guests kept under
// proxy/wasm/testdata/guests for the tests of any package under proxy/ (Go's
// internal rule): Go guests written with the public Proxy-Wasm Go SDK
// (GoSDK), AssemblyScript guests written with @solo-io/proxy-runtime
// (AssemblyScript), and WAT fixtures (WAT).
//
// Each guest is built at most once per test process, and the .wasm is cached
// on disk by a digest of its sources and toolchain (in $WEFT_GUEST_CACHE, or
// weft-guest-cache under os.TempDir()), so repeated `go test` runs do not
// rebuild. Cache entries are written with an atomic rename, so test processes
// running in parallel never read a partial module.
//
// guestbuild is test support only: it must not be imported by non-test code,
// it never downloads anything itself (the go and npm clients do, from their
// configured registries), and it never writes into the source tree.
package guestbuild
