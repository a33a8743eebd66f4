// Package registry owns the control plane's Wasm module registry: modules
// stored on disk by their sha256, listed and read back by digest.
//
// It must not compile, run or interpret modules beyond checking the Wasm
// magic number, and it never deletes a module a config may still name.
package registry
