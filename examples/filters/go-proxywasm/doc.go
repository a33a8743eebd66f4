// Command go-proxywasm is the example filter written with the public
// Proxy-Wasm Go SDK (github.com/proxy-wasm/proxy-wasm-go-sdk, pinned in this
// nested module's go.mod): it adds "x-weft-example: go-proxywasm" to every
// request and to every response, and copies the response's status into
// "x-weft-example-status".
//
// Build (from this directory, stock Go 1.24+):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o go-proxywasm.wasm .
package main
