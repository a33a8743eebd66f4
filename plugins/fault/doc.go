// Command fault is Weft's fault-injection filter: it delays and/or aborts a
// share of requests, optionally only those carrying given headers. Delays
// pause the stream and resume it from the plugin's tick; the VM is never
// blocked. See README.md.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o fault.wasm ./plugins/fault
//
// It owns choosing and applying faults. It must not block the VM (no sleeping
// in a callback) or touch requests that do not match its header conditions.
package main
