/*
 * tagged.c - the C twin of gosdk/tagged: metrics whose names carry tags.
 * On request headers it adds one to counter
 * tagged_requests_method=METHOD_user=USER, adds the content-length to gauge
 * tagged_last_size_user=USER and records it in histogram
 * tagged_sizes_user=USER (x-user's value; "" when absent).
 */
#define PROXY_WASM_IMPLEMENTATION
#include "guest.h"

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, size_t size) { return 1; }

static uint32_t metric(proxy_metric_type_t type, char *name) {
  uint32_t id = 0;
  must(proxy_define_metric(type, name, strlen(name), &id));
  free(name);
  return id;
}

PROXY_WASM_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) {
  char *method = header_or_empty(PROXY_MAP_REQUEST_HEADERS, ":method");
  char *user = header_or_empty(PROXY_MAP_REQUEST_HEADERS, "x-user");
  char *size = header_or_empty(PROXY_MAP_REQUEST_HEADERS, "content-length");
  long long n = atoll(size);
  must(proxy_increment_metric(metric(PROXY_METRIC_COUNTER, concat("tagged_requests_method=", method, "_user=", user, NULL)), 1));
  must(proxy_increment_metric(metric(PROXY_METRIC_GAUGE, concat("tagged_last_size_user=", user, NULL)), n));
  must(proxy_record_metric(metric(PROXY_METRIC_HISTOGRAM, concat("tagged_sizes_user=", user, NULL)), (uint64_t)n));
  free(size);
  free(user);
  free(method);
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) {}
