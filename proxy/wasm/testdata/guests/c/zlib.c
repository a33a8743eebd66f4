/*
 * zlib.c - the C twin of gosdk/zlib: Envoy's compress and uncompress
 * foreign functions. With x-compress it compresses the value, uncompresses
 * the result and sends upstream x-compressed (hex) and x-roundtrip; with
 * x-uncompress-bad it gives uncompress garbage and sends
 * x-uncompress-error (the status, or "none" when it succeeded).
 */
#define PROXY_WASM_IMPLEMENTATION
#include "guest.h"

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, size_t size) { return 1; }

/* call runs a foreign function; the result is malloc'd with a NUL after
 * its *len bytes. */
static proxy_status_t call(const char *name, const char *args, size_t args_len, char **out, size_t *len) {
  char *ptr = NULL;
  *len = 0;
  proxy_status_t st = proxy_call_foreign_function(name, strlen(name), args, args_len, &ptr, len);
  if (st != PROXY_OK) return st;
  *out = (char *)malloc(*len + 1);
  if (*out == NULL) __builtin_trap();
  if (*len > 0) memcpy(*out, ptr, *len);
  (*out)[*len] = '\0';
  free(ptr);
  return PROXY_OK;
}

PROXY_WASM_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) {
  char *v = proxy_header_get(PROXY_MAP_REQUEST_HEADERS, "x-compress");
  if (v != NULL) {
    char *c = NULL, *back = NULL;
    size_t clen = 0, blen = 0;
    must(call("compress", v, strlen(v), &c, &clen));
    must(call("uncompress", c, clen, &back, &blen));
    char *hex = (char *)malloc(clen * 2 + 1);
    if (hex == NULL) __builtin_trap();
    for (size_t i = 0; i < clen; i++) {
      hex[2 * i] = "0123456789abcdef"[(unsigned char)c[i] >> 4];
      hex[2 * i + 1] = "0123456789abcdef"[(unsigned char)c[i] & 15];
    }
    hex[clen * 2] = '\0';
    must(proxy_header_add(PROXY_MAP_REQUEST_HEADERS, "x-compressed", hex));
    must(proxy_add_header_map_value(PROXY_MAP_REQUEST_HEADERS, "x-roundtrip", 11, back, blen));
    free(hex);
    free(back);
    free(c);
    free(v);
  }
  char *bad = proxy_header_get(PROXY_MAP_REQUEST_HEADERS, "x-uncompress-bad");
  if (bad != NULL) {
    char *out = NULL, n[24];
    size_t len = 0;
    proxy_status_t st = call("uncompress", "not zlib", 8, &out, &len);
    char *msg = st == PROXY_OK ? concat("none", NULL) : concat("status ", fmt_int(n, st), NULL);
    must(proxy_header_add(PROXY_MAP_REQUEST_HEADERS, "x-uncompress-error", msg));
    free(msg);
    free(out);
    free(bad);
  }
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) {}
