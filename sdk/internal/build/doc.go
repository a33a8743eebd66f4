// Package build compiles Go Proxy-Wasm guests of this module
// (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared) for tests and
// tools, and caches the modules under os.TempDir() by a digest of their
// sources and toolchain, so repeated test runs do not relink.
//
// It owns only invoking the go command and the cache. It must not write
// into the source tree, download anything itself, or build packages from
// outside the module it runs in.
package build
