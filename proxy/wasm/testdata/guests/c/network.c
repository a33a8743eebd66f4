/*
 * network.c - the C twin of gosdk/network, a network (L4) filter: it
 * upper-cases downstream data, holds back data ending in ':' until more
 * comes, closes the connection on "close-me" and traps on "panic"; it
 * rewrites PING to PONG upstream and appends '@' and the upstream.address
 * property to a line with "ADDR?", '@' and the endpoint's metadata
 * upstream_host_metadata.filter_metadata.host.zone (or NOTFOUND) to one with
 * "ZONE?". It counts both close callbacks and
 * finished connections (net_downstream_closes, net_upstream_closes,
 * net_connections_done).
 */
#define PROXY_WASM_IMPLEMENTATION
#include "guest.h"

static uint32_t down_closes, up_closes, done;

static uint32_t counter(const char *name) {
  uint32_t id = 0;
  must(proxy_define_metric(PROXY_METRIC_COUNTER, name, strlen(name), &id));
  return id;
}

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {
  if (parent == 0) {
    down_closes = counter("net_downstream_closes");
    up_closes = counter("net_upstream_closes");
    done = counter("net_connections_done");
    return;
  }
  ctx_put(id, parent);
}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, size_t size) { return 1; }

PROXY_WASM_EXPORT(proxy_on_new_connection) proxy_action_t proxy_on_new_connection(uint32_t id) {
  proxy_log_str(PROXY_LOG_INFO, "network: new connection");
  return PROXY_CONTINUE;
}

/* data reads size bytes of a buffer (malloc'd; one extra byte is free). */
static char *data(proxy_buffer_type_t b, size_t size, size_t *len) {
  char *ptr = NULL;
  must(proxy_get_buffer_bytes(b, 0, size, &ptr, len));
  char *out = (char *)malloc(*len + 1);
  if (out == NULL) __builtin_trap();
  memcpy(out, ptr, *len);
  out[*len] = '\0';
  free(ptr);
  return out;
}

static int contains(const char *s, size_t n, const char *what) {
  size_t w = strlen(what);
  for (size_t i = 0; i + w <= n; i++)
    if (memcmp(s + i, what, w) == 0) return 1;
  return 0;
}

PROXY_WASM_EXPORT(proxy_on_downstream_data)
proxy_action_t proxy_on_downstream_data(uint32_t id, size_t size, uint32_t end_of_stream) {
  if (size == 0) return PROXY_CONTINUE;
  size_t n = 0;
  char *d = data(PROXY_BUFFER_DOWNSTREAM_DATA, size, &n);
  int hold = !end_of_stream && n > 0 && d[n - 1] == ':';
  for (size_t i = 0; i < n; i++)
    if (d[i] >= 'a' && d[i] <= 'z') d[i] = (char)(d[i] - 'a' + 'A');
  if (contains(d, n, "CLOSE-ME")) {
    free(d);
    must(proxy_close_stream(PROXY_STREAM_DOWNSTREAM));
    return PROXY_CONTINUE;
  }
  if (contains(d, n, "PANIC")) __builtin_trap();
  if (hold) {
    free(d);
    return PROXY_PAUSE;
  }
  must(proxy_set_buffer_bytes(PROXY_BUFFER_DOWNSTREAM_DATA, 0, 0x7fffffff, d, n));
  free(d);
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_upstream_data)
proxy_action_t proxy_on_upstream_data(uint32_t id, size_t size, uint32_t end_of_stream) {
  if (size == 0) return PROXY_CONTINUE;
  size_t n = 0;
  char *d = data(PROXY_BUFFER_UPSTREAM_DATA, size, &n);
  for (size_t i = 0; i + 4 <= n; i++)
    if (memcmp(d + i, "PING", 4) == 0) memcpy(d + i, "PONG", 4);
  if (contains(d, n, "ZONE?")) {
    char *zone = proxy_property_get("upstream_host_metadata\0filter_metadata\0host\0zone",
                                    sizeof("upstream_host_metadata\0filter_metadata\0host\0zone") - 1);
    while (n > 0 && d[n - 1] == '\n') n--;
    d[n] = '\0';
    char *z = concat(d, "@", zone != NULL ? zone : "NOTFOUND", "\n", NULL);
    free(zone);
    free(d);
    d = z;
    n = strlen(d);
  }
  char *out = d;
  if (contains(d, n, "ADDR?")) {
    char *addr = proxy_property_get("upstream\0address", strlen("upstream") + 1 + strlen("address"));
    if (addr == NULL) __builtin_trap();
    while (n > 0 && d[n - 1] == '\n') n--;
    d[n] = '\0';
    out = concat(d, "@", addr, "\n", NULL);
    n = strlen(out);
    free(addr);
    free(d);
  }
  must(proxy_set_buffer_bytes(PROXY_BUFFER_UPSTREAM_DATA, 0, 0x7fffffff, out, n));
  free(out);
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_downstream_connection_close)
void proxy_on_downstream_connection_close(uint32_t id, uint32_t peer) {
  must(proxy_increment_metric(down_closes, 1));
}

PROXY_WASM_EXPORT(proxy_on_upstream_connection_close)
void proxy_on_upstream_connection_close(uint32_t id, uint32_t peer) {
  must(proxy_increment_metric(up_closes, 1));
}

/* on_log ends a connection, as the Go SDK's OnStreamDone. */
PROXY_WASM_EXPORT(proxy_on_log) void proxy_on_log(uint32_t id) {
  if (ctx_root(id) != 0) must(proxy_increment_metric(done, 1));
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) { ctx_del(id); }
