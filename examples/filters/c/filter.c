/*
 * The C example filter: adds "x-weft-example: c" to every request and to
 * every response, and copies the response's status into
 * "x-weft-example-status" (a read through the host, so the allocator is
 * used too). It uses the thin binding in sdk/c/proxy_wasm.h.
 *
 * Build (from the repository root):
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -s -I sdk/c \
 *     -o c.wasm examples/filters/c/filter.c
 */
#define PROXY_WASM_IMPLEMENTATION
#include "proxy_wasm.h"

static const char kName[] = "x-weft-example";
static const char kLang[] = "c";

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t context_id, uint32_t parent_id) {}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, size_t config_size) {
  proxy_log_str(PROXY_LOG_INFO, "c example filter configured");
  return 1;
}

PROXY_WASM_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t context_id, uint32_t headers, uint32_t end_of_stream) {
  proxy_header_add(PROXY_MAP_REQUEST_HEADERS, kName, kLang);
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_response_headers)
proxy_action_t proxy_on_response_headers(uint32_t context_id, uint32_t headers, uint32_t end_of_stream) {
  proxy_header_add(PROXY_MAP_RESPONSE_HEADERS, kName, kLang);
  char *status = proxy_header_get(PROXY_MAP_RESPONSE_HEADERS, ":status");
  if (status != NULL) {
    proxy_header_replace(PROXY_MAP_RESPONSE_HEADERS, "x-weft-example-status", status);
    free(status);
  }
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t context_id) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t context_id) {}
