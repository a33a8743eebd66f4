// Package e2e is test support for the first-party plugins' end-to-end
// tests: it runs a real Weft proxy (proxy.New + Apply) from a YAML config
// whose filters point at the plugin's built .wasm, real upstream servers
// on 127.0.0.1 that record what they receive, and a client.
//
// It is imported only by tests; it must not talk to anything but loopback.
package e2e
