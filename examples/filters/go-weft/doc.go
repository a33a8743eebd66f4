// Command go-weft is the example filter written with Weft's Go guest SDK
// (github.com/weftmesh/weft/sdk): it adds "x-weft-example: go-weft" to every
// request and to every response, and copies the response's status into
// "x-weft-example-status".
//
// Build (from the repository root, stock Go 1.24+):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o go-weft.wasm ./examples/filters/go-weft
package main
