/*
 * noop.c - the C twin of gosdk/noop: a Proxy-Wasm filter that does nothing.
 * It exports every stream callback the public Go SDK exports, each
 * returning at once (Continue), so a stream enters it exactly as often as
 * the Go SDK's no-op: what differs is only the guest's own code (no Go
 * runtime entry, no context table). `weft bench` measures it as
 * weft-c-noop-N.
 */
#define PROXY_WASM_IMPLEMENTATION
#include "proxy_wasm.h"

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, size_t size) { return 1; }

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, size_t size) { return 1; }

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

PROXY_WASM_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) { return PROXY_CONTINUE; }

PROXY_WASM_EXPORT(proxy_on_request_body)
proxy_action_t proxy_on_request_body(uint32_t id, uint32_t size, uint32_t end_of_stream) { return PROXY_CONTINUE; }

PROXY_WASM_EXPORT(proxy_on_request_trailers)
proxy_action_t proxy_on_request_trailers(uint32_t id, uint32_t trailers) { return PROXY_CONTINUE; }

PROXY_WASM_EXPORT(proxy_on_response_headers)
proxy_action_t proxy_on_response_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) { return PROXY_CONTINUE; }

PROXY_WASM_EXPORT(proxy_on_response_body)
proxy_action_t proxy_on_response_body(uint32_t id, uint32_t size, uint32_t end_of_stream) { return PROXY_CONTINUE; }

PROXY_WASM_EXPORT(proxy_on_response_trailers)
proxy_action_t proxy_on_response_trailers(uint32_t id, uint32_t trailers) { return PROXY_CONTINUE; }

PROXY_WASM_EXPORT(proxy_on_log) void proxy_on_log(uint32_t id) {}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) {}
