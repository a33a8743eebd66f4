// Package guestbuild gives the tests of any package under proxy/ (Go's
// internal rule) the Proxy-Wasm test guests kept under
// proxy/wasm/testdata/guests: Go guests written with the public Proxy-Wasm
// Go SDK (GoSDK), AssemblyScript guests written with
// @solo-io/proxy-runtime (AssemblyScript), and WAT fixtures (WAT).
//
// It is a thin testing.TB wrapper over sdk/wasmbuild, which builds and
// caches the modules (once per process; on disk by a digest of sources and
// toolchain, in $WEFT_GUEST_CACHE or weft-wasm-cache under os.TempDir()).
// A missing toolchain skips the test with the install hint; any other
// failure fails it.
//
// guestbuild is test support only: it must not be imported by non-test
// code, and it never writes into the source tree.
package guestbuild
