/*
 * proxy_wasm.h - a thin C binding of the Proxy-Wasm ABI 0.2.1 for Weft
 * (and any Proxy-Wasm host). One header, no runtime of its own.
 *
 * It declares the host functions (module "env"), the ABI's enumerations,
 * and a few helpers for strings. The filter defines the callbacks it needs
 * (proxy_on_context_create, proxy_on_request_headers, ...), each marked
 * PROXY_WASM_EXPORT(name). In exactly one .c file, define PROXY_WASM_IMPLEMENTATION
 * before including this header: that file then also gets the ABI version
 * marker and the allocator the host calls (proxy_on_memory_allocate, over
 * malloc). Memory the host hands over (the *_ret_ptr results) belongs to
 * the filter: release it with free().
 *
 * Build (Debian: apt-get install -y clang lld wasi-libc libclang-rt-dev-wasm32):
 *   clang --target=wasm32-wasi -O2 -mexec-model=reactor -s -I sdk/c -o f.wasm f.c
 * -mexec-model=reactor makes a module whose _initialize the host calls once
 * (a command's _start would exit).
 *
 * The ABI itself: docs/plugins.md and the Proxy-Wasm spec.
 */
#ifndef WEFT_PROXY_WASM_H
#define WEFT_PROXY_WASM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* PROXY_WASM_EXPORT exports a callback under its own name. */
#define PROXY_WASM_EXPORT(name) __attribute__((export_name(#name)))
/* PROXY_WASM_IMPORT declares a host function of module "env". */
#define PROXY_WASM_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

/* Status codes the host functions return. */
typedef enum {
  PROXY_OK = 0,
  PROXY_NOT_FOUND = 1,
  PROXY_BAD_ARGUMENT = 2,
  PROXY_SERIALIZATION_FAILURE = 3,
  PROXY_PARSE_FAILURE = 4,
  PROXY_BAD_EXPRESSION = 5,
  PROXY_INVALID_MEMORY_ACCESS = 6,
  PROXY_EMPTY = 7,
  PROXY_CAS_MISMATCH = 8,
  PROXY_RESULT_MISMATCH = 9,
  PROXY_INTERNAL_FAILURE = 10,
  PROXY_BROKEN_CONNECTION = 11,
  PROXY_UNIMPLEMENTED = 12,
} proxy_status_t;

/* Actions returned by the header and body callbacks. */
typedef enum { PROXY_CONTINUE = 0, PROXY_PAUSE = 1 } proxy_action_t;

/* Log levels. */
typedef enum {
  PROXY_LOG_TRACE = 0,
  PROXY_LOG_DEBUG = 1,
  PROXY_LOG_INFO = 2,
  PROXY_LOG_WARN = 3,
  PROXY_LOG_ERROR = 4,
  PROXY_LOG_CRITICAL = 5,
} proxy_log_level_t;

/* Header maps. */
typedef enum {
  PROXY_MAP_REQUEST_HEADERS = 0,
  PROXY_MAP_REQUEST_TRAILERS = 1,
  PROXY_MAP_RESPONSE_HEADERS = 2,
  PROXY_MAP_RESPONSE_TRAILERS = 3,
  PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS = 6,
  PROXY_MAP_HTTP_CALL_RESPONSE_TRAILERS = 7,
} proxy_map_type_t;

/* Buffers. */
typedef enum {
  PROXY_BUFFER_REQUEST_BODY = 0,
  PROXY_BUFFER_RESPONSE_BODY = 1,
  PROXY_BUFFER_DOWNSTREAM_DATA = 2, /* network filters: bytes from the client */
  PROXY_BUFFER_UPSTREAM_DATA = 3,   /* network filters: bytes from the upstream */
  PROXY_BUFFER_HTTP_CALL_RESPONSE_BODY = 4,
  PROXY_BUFFER_VM_CONFIGURATION = 6,
  PROXY_BUFFER_PLUGIN_CONFIGURATION = 7,
} proxy_buffer_type_t;

/* Streams, for proxy_continue_stream and proxy_close_stream (downstream
 * and upstream: the connections of a network filter). */
typedef enum {
  PROXY_STREAM_REQUEST = 0,
  PROXY_STREAM_RESPONSE = 1,
  PROXY_STREAM_DOWNSTREAM = 2,
  PROXY_STREAM_UPSTREAM = 3,
} proxy_stream_type_t;

/* Who closed a connection, in the connection-close callbacks. */
typedef enum { PROXY_PEER_UNKNOWN = 0, PROXY_PEER_LOCAL = 1, PROXY_PEER_REMOTE = 2 } proxy_peer_type_t;

/* Metric kinds. */
typedef enum { PROXY_METRIC_COUNTER = 0, PROXY_METRIC_GAUGE = 1, PROXY_METRIC_HISTOGRAM = 2 } proxy_metric_type_t;

/* ---- host functions ---------------------------------------------------- */

PROXY_WASM_IMPORT(proxy_log)
proxy_status_t proxy_log(proxy_log_level_t level, const char *msg, size_t len);
PROXY_WASM_IMPORT(proxy_get_log_level)
proxy_status_t proxy_get_log_level(proxy_log_level_t *ret_level);
PROXY_WASM_IMPORT(proxy_get_current_time_nanoseconds)
proxy_status_t proxy_get_current_time_nanoseconds(uint64_t *ret_time);
PROXY_WASM_IMPORT(proxy_set_tick_period_milliseconds)
proxy_status_t proxy_set_tick_period_milliseconds(uint32_t ms);

PROXY_WASM_IMPORT(proxy_get_property)
proxy_status_t proxy_get_property(const char *path, size_t path_len, char **ret_ptr, size_t *ret_len);
PROXY_WASM_IMPORT(proxy_set_property)
proxy_status_t proxy_set_property(const char *path, size_t path_len, const char *val, size_t val_len);

PROXY_WASM_IMPORT(proxy_get_header_map_pairs)
proxy_status_t proxy_get_header_map_pairs(proxy_map_type_t map, char **ret_ptr, size_t *ret_len);
PROXY_WASM_IMPORT(proxy_set_header_map_pairs)
proxy_status_t proxy_set_header_map_pairs(proxy_map_type_t map, const char *ptr, size_t len);
PROXY_WASM_IMPORT(proxy_get_header_map_value)
proxy_status_t proxy_get_header_map_value(proxy_map_type_t map, const char *key, size_t key_len,
                                          char **ret_ptr, size_t *ret_len);
PROXY_WASM_IMPORT(proxy_add_header_map_value)
proxy_status_t proxy_add_header_map_value(proxy_map_type_t map, const char *key, size_t key_len,
                                          const char *val, size_t val_len);
PROXY_WASM_IMPORT(proxy_replace_header_map_value)
proxy_status_t proxy_replace_header_map_value(proxy_map_type_t map, const char *key, size_t key_len,
                                              const char *val, size_t val_len);
PROXY_WASM_IMPORT(proxy_remove_header_map_value)
proxy_status_t proxy_remove_header_map_value(proxy_map_type_t map, const char *key, size_t key_len);
PROXY_WASM_IMPORT(proxy_get_header_map_size)
proxy_status_t proxy_get_header_map_size(proxy_map_type_t map, size_t *ret_size);

PROXY_WASM_IMPORT(proxy_get_buffer_bytes)
proxy_status_t proxy_get_buffer_bytes(proxy_buffer_type_t type, size_t start, size_t max_len, char **ret_ptr,
                                      size_t *ret_len);
PROXY_WASM_IMPORT(proxy_set_buffer_bytes)
proxy_status_t proxy_set_buffer_bytes(proxy_buffer_type_t type, size_t start, size_t len, const char *data,
                                      size_t data_len);

PROXY_WASM_IMPORT(proxy_continue_stream)
proxy_status_t proxy_continue_stream(proxy_stream_type_t stream);
PROXY_WASM_IMPORT(proxy_close_stream)
proxy_status_t proxy_close_stream(proxy_stream_type_t stream);
PROXY_WASM_IMPORT(proxy_send_local_response)
proxy_status_t proxy_send_local_response(uint32_t status, const char *details, size_t details_len,
                                         const char *body, size_t body_len, const char *headers,
                                         size_t headers_len, int32_t grpc_status);
PROXY_WASM_IMPORT(proxy_set_effective_context)
proxy_status_t proxy_set_effective_context(uint32_t context_id);
PROXY_WASM_IMPORT(proxy_done)
proxy_status_t proxy_done(void);

PROXY_WASM_IMPORT(proxy_http_call)
proxy_status_t proxy_http_call(const char *cluster, size_t cluster_len, const char *headers,
                               size_t headers_len, const char *body, size_t body_len, const char *trailers,
                               size_t trailers_len, uint32_t timeout_ms, uint32_t *ret_token);

PROXY_WASM_IMPORT(proxy_get_shared_data)
proxy_status_t proxy_get_shared_data(const char *key, size_t key_len, char **ret_val, size_t *ret_len,
                                     uint32_t *ret_cas);
PROXY_WASM_IMPORT(proxy_set_shared_data)
proxy_status_t proxy_set_shared_data(const char *key, size_t key_len, const char *val, size_t val_len,
                                     uint32_t cas);

PROXY_WASM_IMPORT(proxy_register_shared_queue)
proxy_status_t proxy_register_shared_queue(const char *name, size_t name_len, uint32_t *ret_id);
PROXY_WASM_IMPORT(proxy_resolve_shared_queue)
proxy_status_t proxy_resolve_shared_queue(const char *vm_id, size_t vm_id_len, const char *name, size_t name_len,
                                          uint32_t *ret_id);
PROXY_WASM_IMPORT(proxy_enqueue_shared_queue)
proxy_status_t proxy_enqueue_shared_queue(uint32_t id, const char *val, size_t val_len);
PROXY_WASM_IMPORT(proxy_dequeue_shared_queue)
proxy_status_t proxy_dequeue_shared_queue(uint32_t id, char **ret_val, size_t *ret_len);

PROXY_WASM_IMPORT(proxy_call_foreign_function)
proxy_status_t proxy_call_foreign_function(const char *name, size_t name_len, const char *args, size_t args_len,
                                           char **ret_ptr, size_t *ret_len);

PROXY_WASM_IMPORT(proxy_define_metric)
proxy_status_t proxy_define_metric(proxy_metric_type_t type, const char *name, size_t name_len,
                                   uint32_t *ret_id);
PROXY_WASM_IMPORT(proxy_increment_metric)
proxy_status_t proxy_increment_metric(uint32_t id, int64_t delta);
PROXY_WASM_IMPORT(proxy_record_metric)
proxy_status_t proxy_record_metric(uint32_t id, uint64_t value);
PROXY_WASM_IMPORT(proxy_get_metric)
proxy_status_t proxy_get_metric(uint32_t id, uint64_t *ret_value);

/* ---- helpers for NUL-terminated strings -------------------------------- */

/* proxy_log_str logs a C string at level. */
static inline void proxy_log_str(proxy_log_level_t level, const char *msg) { proxy_log(level, msg, strlen(msg)); }

/* proxy_header_add adds a value to a header map. */
static inline proxy_status_t proxy_header_add(proxy_map_type_t map, const char *key, const char *val) {
  return proxy_add_header_map_value(map, key, strlen(key), val, strlen(val));
}

/* proxy_header_replace sets a header, replacing every value it had. */
static inline proxy_status_t proxy_header_replace(proxy_map_type_t map, const char *key, const char *val) {
  return proxy_replace_header_map_value(map, key, strlen(key), val, strlen(val));
}

/* proxy_header_remove removes a header. */
static inline proxy_status_t proxy_header_remove(proxy_map_type_t map, const char *key) {
  return proxy_remove_header_map_value(map, key, strlen(key));
}

/* proxy_header_get returns a header's value as a malloc'd NUL-terminated
 * string (free it), or NULL when the header is absent. */
static inline char *proxy_header_get(proxy_map_type_t map, const char *key) {
  char *ptr = NULL;
  size_t len = 0;
  if (proxy_get_header_map_value(map, key, strlen(key), &ptr, &len) != PROXY_OK) return NULL;
  char *s = (char *)malloc(len + 1);
  if (s != NULL) {
    if (len > 0) memcpy(s, ptr, len);
    s[len] = '\0';
  }
  free(ptr);
  return s;
}

/* proxy_plugin_config returns the plugin configuration as a malloc'd
 * NUL-terminated string (free it), or NULL when there is none. Call it from
 * proxy_on_configure with the size the host passed. */
static inline char *proxy_plugin_config(size_t size) {
  char *ptr = NULL;
  size_t len = 0;
  if (size == 0 || proxy_get_buffer_bytes(PROXY_BUFFER_PLUGIN_CONFIGURATION, 0, size, &ptr, &len) != PROXY_OK)
    return NULL;
  char *s = (char *)malloc(len + 1);
  if (s != NULL) {
    if (len > 0) memcpy(s, ptr, len);
    s[len] = '\0';
  }
  free(ptr);
  return s;
}

/* proxy_property_get returns a property (path segments joined by NUL, as
 * the ABI wants: "upstream\0address") as a malloc'd NUL-terminated string
 * (free it), or NULL when it is not found. path_len counts every byte. */
static inline char *proxy_property_get(const char *path, size_t path_len) {
  char *ptr = NULL;
  size_t len = 0;
  if (proxy_get_property(path, path_len, &ptr, &len) != PROXY_OK) return NULL;
  char *s = (char *)malloc(len + 1);
  if (s != NULL) {
    if (len > 0) memcpy(s, ptr, len);
    s[len] = '\0';
  }
  free(ptr);
  return s;
}

/* proxy_send_response answers the stream locally with status and body (no
 * extra headers); return PROXY_PAUSE from the callback afterwards. */
static inline proxy_status_t proxy_send_response(uint32_t status, const char *body) {
  return proxy_send_local_response(status, "", 0, body, strlen(body), "\0\0\0\0", 4, -1);
}

/* ---- the ABI marker and the allocator (one translation unit) ------------ */

#ifdef PROXY_WASM_IMPLEMENTATION
/* The ABI version this filter speaks: the host looks for this export. */
PROXY_WASM_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

/* The host asks for memory to hand data over (headers, buffers, properties). */
PROXY_WASM_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) { return malloc(size); }
#endif

#ifdef __cplusplus
}
#endif

#endif /* WEFT_PROXY_WASM_H */
