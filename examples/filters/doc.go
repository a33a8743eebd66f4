// Package filters holds Weft's example Proxy-Wasm filters, one directory per
// language (go-weft, go-proxywasm, assemblyscript, c, rust, zig, wat), each
// adding "x-weft-example: <language>" to requests and responses. The
// package's tests build every example with its own toolchain and run it in
// a real proxy; the Go code here is only those tests and the builder in
// internal/exbuild. Nothing here is a library for the proxy to import.
package filters
