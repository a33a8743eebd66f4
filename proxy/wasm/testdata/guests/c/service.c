/*
 * service.c - the C twin of gosdk/service. Plugin config "service": a root
 * on no listener (a Wasm service) that registers queue "jobs", ticks every
 * 10ms (shared data service.ticks), calls cluster "up" out once (GET
 * /from-service; service.callout = the answer's :status, or why the call
 * failed) and drains "jobs" into service.seen ("seen:a,b"). Plugin config
 * "filter": on request headers it enqueues x-enqueue's value on "jobs" of
 * its own vm_id and adds x-service-ticks, x-service-callout and
 * x-service-seen from shared data.
 */
#define PROXY_WASM_IMPLEMENTATION
#include "guest.h"

static int ticks, calling;
static uint32_t queue_id, call_token;

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, size_t size) {
  char *cfg = proxy_plugin_config(size);
  uint32_t ok = 1;
  if (cfg != NULL && strcmp(cfg, "service") == 0) {
    if (proxy_register_shared_queue("jobs", 4, &queue_id) != PROXY_OK) {
      proxy_log_str(PROXY_LOG_CRITICAL, "service: register queue");
      ok = 0;
    } else if (proxy_set_tick_period_milliseconds(10) != PROXY_OK) {
      proxy_log_str(PROXY_LOG_CRITICAL, "service: tick period");
      ok = 0;
    }
  } else if (cfg == NULL || strcmp(cfg, "filter") != 0) {
    proxy_log_str(PROXY_LOG_CRITICAL, "service: unknown role");
    ok = 0;
  }
  free(cfg);
  return ok;
}

/* put_pair writes a Proxy-Wasm map's sizes (at *sizes) and bytes (at *data). */
static void put_pair(char **sizes, char **data, const char *k, const char *v) {
  uint32_t kl = strlen(k), vl = strlen(v);
  memcpy(*sizes, &kl, 4);
  memcpy(*sizes + 4, &vl, 4);
  *sizes += 8;
  memcpy(*data, k, kl + 1);
  *data += kl + 1;
  memcpy(*data, v, vl + 1);
  *data += vl + 1;
}

PROXY_WASM_EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root_id) {
  char n[24];
  ticks++;
  shared_set("service.ticks", fmt_int(n, ticks));
  if (calling) return;
  calling = 1;
  char buf[128];
  uint32_t count = 3;
  memcpy(buf, &count, 4);
  char *sizes = buf + 4, *data = buf + 4 + 3 * 8;
  put_pair(&sizes, &data, ":method", "GET");
  put_pair(&sizes, &data, ":path", "/from-service");
  put_pair(&sizes, &data, ":authority", "up");
  proxy_status_t st = proxy_http_call("up", 2, buf, data - buf, NULL, 0, NULL, 0, 5000, &call_token);
  if (st != PROXY_OK) {
    char *why = concat("dispatch failed: status ", fmt_int(n, st), NULL);
    shared_set("service.callout", why);
    free(why);
  }
}

PROXY_WASM_EXPORT(proxy_on_http_call_response)
void proxy_on_http_call_response(uint32_t root_id, uint32_t token, uint32_t headers, size_t body_size,
                                 uint32_t trailers) {
  char *status = proxy_header_get(PROXY_MAP_HTTP_CALL_RESPONSE_HEADERS, ":status");
  shared_set("service.callout", status != NULL ? status : "failed");
  free(status);
}

PROXY_WASM_EXPORT(proxy_on_queue_ready) void proxy_on_queue_ready(uint32_t root_id, uint32_t id) {
  for (;;) {
    char *item = NULL;
    size_t len = 0;
    if (proxy_dequeue_shared_queue(id, &item, &len) != PROXY_OK) return;
    char *it = (char *)malloc(len + 1);
    if (it == NULL) __builtin_trap();
    memcpy(it, item, len);
    it[len] = '\0';
    free(item);
    char *seen = shared_get("service.seen");
    char *next = seen[0] == '\0' ? concat("seen:", it, NULL) : concat(seen, ",", it, NULL);
    shared_set("service.seen", next);
    free(next);
    free(seen);
    free(it);
  }
}

PROXY_WASM_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) {
  char *v = proxy_header_get(PROXY_MAP_REQUEST_HEADERS, "x-enqueue");
  if (v != NULL) {
    char *vm_id = NULL;
    size_t vm_len = 0;
    must(proxy_get_property("plugin_vm_id", strlen("plugin_vm_id"), &vm_id, &vm_len));
    uint32_t q = 0;
    must(proxy_resolve_shared_queue(vm_id, vm_len, "jobs", 4, &q));
    must(proxy_enqueue_shared_queue(q, v, strlen(v)));
    free(vm_id);
    free(v);
  }
  static const char *keys[] = {"ticks", "callout", "seen"};
  for (int i = 0; i < 3; i++) {
    char *skey = concat("service.", keys[i], NULL), *hkey = concat("x-service-", keys[i], NULL);
    char *val = shared_get(skey);
    must(proxy_header_add(PROXY_MAP_REQUEST_HEADERS, hkey, val));
    free(val);
    free(hkey);
    free(skey);
  }
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) { return 1; }

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) {}
