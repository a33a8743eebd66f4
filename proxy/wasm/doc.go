// Package wasm is Weft's Proxy-Wasm host: it runs filters built with the
// Proxy-Wasm SDKs (ABI 0.2.1, 0.2.0 and, where cheap, 0.1.0) on wazero, as
// Envoy would.
//
// It owns: compiling modules (content addressed, through wazero's
// compilation cache), the VM pool of each plugin (a stream is bound to one VM,
// calls into a VM are serialised), every host function of the ABI (module
// `env`, one file per area: abi_log.go, abi_properties.go, abi_headers.go,
// abi_buffers.go, abi_stream.go, abi_httpcall.go, abi_shared.go,
// abi_metrics.go, abi_grpc.go; foreign functions such as
// weft.verify_signature in abi_foreign*.go), WASI for guests, and the
// bounds that keep a guest from hurting the proxy: a memory limit per VM,
// a deadline per callback, and the plugin's failure policy (fail_closed answers 503 like
// Envoy's failStream; fail_open skips the filter for the rest of the stream).
// A broken VM (trap, overrun deadline, bad state) is thrown away and
// replaced in the background.
//
// Envoy behaviours kept on purpose: proxy_http_call belongs to the root
// context (the answer comes to proxy_on_http_call_response with the root
// id; SDKs switch to the calling stream themselves); a local reply ends the
// request path but the response callbacks still run on it; a streamed body
// is seen chunk by chunk and buffered only on Pause (413 over MaxBodyBytes
// for requests, 500 for responses). What a filter writes is held to the
// listener's limits (limits.go).
// Each call into a guest costs three small allocations inside wazero (the
// watcher that enforces the callback deadline); host functions themselves
// allocate nothing in steady state.
//
// It must not: route, pick endpoints or talk to the network itself (HTTP
// call-outs go through Env.Upstream, which the data plane implements), read
// configuration files other than the module a filter names, or panic on
// anything a guest does.
package wasm
