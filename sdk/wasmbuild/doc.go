// Package wasmbuild builds Proxy-Wasm filters from source for tests and
// tools, with each language's own toolchain: Go (the stock toolchain,
// GOOS=wasip1 GOARCH=wasm -buildmode=c-shared), AssemblyScript (asc from
// the package's pinned npm dependencies), C (clang and wasi-libc), Rust
// (rustc for wasm32-wasi), Zig (zig build-lib for wasm32-freestanding) and
// WAT (wat2wasm).
//
// Every module is cached on disk under a name derived from a digest of its
// sources and toolchain version (Options.CacheDir, default DefaultCacheDir:
// $WEFT_GUEST_CACHE, else weft-wasm-cache under os.TempDir()), so repeated
// runs do not rebuild. Entries appear by an atomic rename, so concurrent
// processes building the same module never see a partial file. Within one
// process, a build with the same Options runs once and later calls reuse
// its Module. npm dependencies (AssemblyScript, Zig) are installed with
// `npm ci` into the cache as well, never into the source tree.
//
// A missing toolchain is reported as a *MissingToolchainError (matching
// ErrToolchainMissing with errors.Is) that says how to install it; test
// helpers skip on it instead of failing.
//
//	m, err := wasmbuild.Go(ctx, wasmbuild.Options{Dir: root, Package: "./plugins/auth"})
//	if errors.Is(err, wasmbuild.ErrToolchainMissing) { t.Skip(err) }
//
// wasmbuild owns invoking the toolchains and the cache. It must not write
// into the source tree, install system packages, or download anything
// itself (the go and npm clients do, from their configured registries). It
// is host-side code: it is never compiled into a guest.
package wasmbuild
