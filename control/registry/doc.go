// Package registry owns the control plane's Wasm module registry: modules
// stored on disk by their sha256, listed and read back by digest, counted
// by the references the control plane reports and garbage-collected a
// grace period after the last one went away. Shared (Share), it also keeps
// the modules where every control-plane replica reads them, and fetches a
// module it lacks from there.
//
// It must not compile, run or interpret modules beyond checking the Wasm
// magic number, and it never deletes a module a resource or snapshot names
// (it does not read them: the caller counts references for Collect).
package registry
