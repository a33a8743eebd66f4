// Package exbuild builds the example filters of examples/filters from their
// sources with each language's own toolchain (go, npm + asc, clang, rustc,
// zig, wat2wasm), caching every module by a digest of its sources and
// toolchain version under $WEFT_GUEST_CACHE (default
// $TMPDIR/weft-example-cache). npm-installed toolchains go into the same
// cache, never into the repository. A missing toolchain is reported as a
// *SkipError whose message says how to install it.
//
// It serves the examples' end-to-end tests and `task examples`; it must not
// be imported by the proxy, and it never installs system packages.
package exbuild
