/*
 * loglevel.c - the C twin of gosdk/loglevel: on request headers it sends
 * upstream x-log-level (what proxy_get_log_level answers) and logs
 * "loglevel line L" at every level L from trace (0) to critical (5),
 * whatever the level, so the host's filtering is what a test sees.
 */
#define PROXY_WASM_IMPLEMENTATION
#include "guest.h"

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, size_t size) { return 1; }

PROXY_WASM_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) {
  proxy_log_level_t level;
  char n[24];
  must(proxy_get_log_level(&level));
  must(proxy_header_add(PROXY_MAP_REQUEST_HEADERS, "x-log-level", fmt_int(n, level)));
  for (int l = PROXY_LOG_TRACE; l <= PROXY_LOG_CRITICAL; l++) {
    char *msg = concat("loglevel line ", fmt_int(n, l), NULL);
    must(proxy_log((proxy_log_level_t)l, msg, strlen(msg)));
    free(msg);
  }
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) {}
