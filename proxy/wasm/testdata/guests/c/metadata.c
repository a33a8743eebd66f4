/*
 * metadata.c - the C twin of gosdk/metadata: metadata properties. On
 * request headers it reads, and sends upstream:
 *   x-route-auth: route_metadata.filter_metadata["envoy.filters.http.wasm"].auth
 *   x-route-weight: ….weight, a number (an 8-byte little-endian double)
 *   x-cluster-location: cluster_metadata.filter_metadata.location as a
 *     Proxy-Wasm map, "k=v,…" sorted
 *   x-listener-team: xds.listener_metadata.filter_metadata.team.name
 * On response headers, once the cluster and endpoint are chosen, it answers
 * x-cluster-location (the same read) and x-host-zone
 * (upstream_host_metadata.filter_metadata.host.zone) to the client. A property that is not
 * found reads "NOTFOUND".
 */
#define PROXY_WASM_IMPLEMENTATION
#include <stdio.h>

#include "guest.h"

/* PATH builds a property path from a string literal with \0 between
 * segments (its length without the literal's own NUL). */
#define PATH(lit) lit, sizeof(lit) - 1

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, size_t size) { return 1; }

static char *str(const char *path, size_t len) {
  char *v = proxy_property_get(path, len);
  return v != NULL ? v : concat("NOTFOUND", NULL);
}

/* weight formats the double with the fewest digits that read back the
 * same (Go's strconv 'g', -1), or NOTFOUND. */
static char *weight(void) {
  char *ptr = NULL;
  size_t len = 0;
  if (proxy_get_property(PATH("route_metadata\0filter_metadata\0envoy.filters.http.wasm\0weight"), &ptr, &len) !=
      PROXY_OK)
    return concat("NOTFOUND", NULL);
  if (len != 8) {
    free(ptr);
    return concat("NOTFOUND", NULL);
  }
  double d;
  memcpy(&d, ptr, 8);
  free(ptr);
  char buf[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) break;
  }
  return concat(buf, NULL);
}

static int by_string(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* cluster_location reads cluster_metadata.filter_metadata.location as a
 * Proxy-Wasm map (u32 count, count × (u32 key size, u32 value size), then
 * each key and value followed by a NUL): "k=v,…" sorted, or NOTFOUND. */
static char *cluster_location(void) {
  char *ptr = NULL;
  size_t len = 0;
  if (proxy_get_property(PATH("cluster_metadata\0filter_metadata\0location"), &ptr, &len) != PROXY_OK || len < 4) {
    free(ptr);
    return concat("NOTFOUND", NULL);
  }
  uint32_t count;
  memcpy(&count, ptr, 4);
  if (count > 1024 || len < 4 + (size_t)count * 8) __builtin_trap();
  char **kv = (char **)calloc(count + 1, sizeof(char *));
  const char *p = ptr + 4 + count * 8;
  size_t total = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t kl, vl;
    memcpy(&kl, ptr + 4 + i * 8, 4);
    memcpy(&vl, ptr + 4 + i * 8 + 4, 4);
    if (p + kl + 1 + vl + 1 > ptr + len) __builtin_trap();
    kv[i] = (char *)malloc(kl + vl + 2);
    memcpy(kv[i], p, kl);
    kv[i][kl] = '=';
    memcpy(kv[i] + kl + 1, p + kl + 1, vl);
    kv[i][kl + 1 + vl] = '\0';
    total += kl + vl + 2;
    p += kl + 1 + vl + 1;
  }
  free(ptr);
  qsort(kv, count, sizeof(char *), by_string);
  char *out = (char *)malloc(total + 1);
  out[0] = '\0';
  for (uint32_t i = 0; i < count; i++) {
    if (i > 0) strcat(out, ",");
    strcat(out, kv[i]);
    free(kv[i]);
  }
  free(kv);
  return out;
}

static void set(const char *key, char *val) {
  must(proxy_header_add(PROXY_MAP_REQUEST_HEADERS, key, val));
  free(val);
}

PROXY_WASM_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) {
  set("x-route-auth", str(PATH("route_metadata\0filter_metadata\0envoy.filters.http.wasm\0auth")));
  set("x-route-weight", weight());
  set("x-cluster-location", cluster_location());
  set("x-listener-team", str(PATH("xds\0listener_metadata\0filter_metadata\0team\0name")));
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_response_headers)
proxy_action_t proxy_on_response_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) {
  char *loc = cluster_location();
  must(proxy_header_add(PROXY_MAP_RESPONSE_HEADERS, "x-cluster-location", loc));
  free(loc);
  char *zone = str(PATH("upstream_host_metadata\0filter_metadata\0host\0zone"));
  must(proxy_header_add(PROXY_MAP_RESPONSE_HEADERS, "x-host-zone", zone));
  free(zone);
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) {}
