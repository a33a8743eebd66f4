// Package exbuild lists the example filters of examples/filters and builds
// each from its sources through sdk/wasmbuild with its language's own
// toolchain (go, npm + asc, clang, rustc, zig, wat2wasm), cached by a digest
// of sources and toolchain under $WEFT_GUEST_CACHE (default weft-wasm-cache
// under os.TempDir()). A missing toolchain is reported as a
// *wasmbuild.MissingToolchainError (IsSkip) that says how to install it.
//
// It serves the examples' end-to-end tests and `task examples`; it must not
// be imported by the proxy, and it never installs system packages.
package exbuild
