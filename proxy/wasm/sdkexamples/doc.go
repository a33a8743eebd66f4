// Package sdkexamples runs the example filters of the public Proxy-Wasm Go
// SDK (github.com/proxy-wasm/proxy-wasm-go-sdk, examples/) in a real weft
// proxy, each configured as its envoy.yaml says, and checks what the SDK's
// own end-to-end test (e2e/e2e_test.go) expects of Envoy: log lines, status
// codes, bodies, headers, metrics. It counts how many of the 16 e2e-tested
// examples behave (issue 17's figure).
//
// The SDK is not vendored: set WEFT_GO_SDK_DIR to a checkout of it (the
// examples are modules of their own that build against it); without it the
// test skips. It holds tests only and owns no production code.
package sdkexamples
