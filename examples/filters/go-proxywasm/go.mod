module github.com/weftmesh/weft/examples/filters/go-proxywasm

go 1.26.8

require github.com/proxy-wasm/proxy-wasm-go-sdk v0.0.0-20260105142703-44c7d5847745
