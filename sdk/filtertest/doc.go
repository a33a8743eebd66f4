// Package filtertest runs a Proxy-Wasm filter (.wasm, from any language) in
// Weft's real Wasm host (proxy/wasm) and lets tests and the `weft filter`
// command send requests and responses through it: what the upstream saw,
// what the client got, local replies, the guest's logs and metrics, and the
// HTTP call-outs it made.
//
// Upstreams and call-out clusters are real fasthttp servers on 127.0.0.1,
// started by the harness from handlers the test gives. The filter runs in
// the pipeline order of the proxy: request headers, request body (when
// there is one), the upstream (unless the filter answered locally), response
// headers, response body, log, done.
//
//	wasm := filtertest.BuildGo(t, "./plugins/auth")
//	h := filtertest.New(t, wasm, filtertest.Config{PluginConfig: []byte(`{...}`)})
//	res := h.Request(filtertest.Req{Path: "/api", Headers: [][2]string{{"authorization", "Bearer ..."}}})
//	if res.Response.Status != 401 { ... }
//
// It owns the harness and the `weft filter run|test` command (Command). It
// must not reach beyond loopback, and it must not depend on the proxy's
// data plane (listeners, routes, clusters): that is what the proxy's own
// end-to-end tests cover.
package filtertest
