/*
 * sharedvm.c - the C twin of gosdk/sharedvm: plugins sharing one VM. Its
 * globals are the VM's: how many times on_vm_start ran, how many root
 * contexts live in the VM, how many streams every plugin of the VM served.
 *
 * Plugin config is the plugin's name, optionally followed by ",tick": that
 * root ticks every 10ms and counts its own ticks. On request headers each
 * stream adds, for its plugin NAME: x-NAME-root (its root context id),
 * x-NAME-plugin-name (the plugin_name property), x-NAME-vm-starts and
 * x-NAME-roots (the VM's counts), x-NAME-streams (streams of every plugin
 * of this VM so far, this one included) and x-NAME-ticks (its root's).
 */
#define PROXY_WASM_IMPLEMENTATION
#include "guest.h"

static int vm_starts, live_roots, streams;

#define MAX_ROOTS 64
static struct root {
  uint32_t id;
  char name[64];
  int ticks;
} roots[MAX_ROOTS];

/* root_of is the root with id; id 0 finds a free slot. */
static struct root *root_of(uint32_t id) {
  for (int i = 0; i < MAX_ROOTS; i++)
    if (roots[i].id == id) return &roots[i];
  return NULL;
}

PROXY_WASM_EXPORT(proxy_on_vm_start) uint32_t proxy_on_vm_start(uint32_t root_id, size_t vm_config_size) {
  vm_starts++;
  return 1;
}

PROXY_WASM_EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {
  if (parent != 0) {
    ctx_put(id, parent);
    return;
  }
  struct root *r = root_of(0);
  if (r == NULL) __builtin_trap();
  memset(r, 0, sizeof *r);
  r->id = id;
  live_roots++;
}

PROXY_WASM_EXPORT(proxy_on_configure) uint32_t proxy_on_configure(uint32_t root_id, size_t size) {
  struct root *r = root_id != 0 ? root_of(root_id) : NULL;
  char *cfg = proxy_plugin_config(size);
  if (r == NULL || cfg == NULL || cfg[0] == '\0') {
    proxy_log_str(PROXY_LOG_CRITICAL, "sharedvm: plugin config must name the plugin");
    free(cfg);
    return 0;
  }
  char *opt = strchr(cfg, ',');
  if (opt != NULL) *opt++ = '\0';
  if (strlen(cfg) >= sizeof r->name) {
    free(cfg);
    return 0;
  }
  strcpy(r->name, cfg);
  int tick = opt != NULL && strcmp(opt, "tick") == 0;
  free(cfg);
  if (tick && proxy_set_tick_period_milliseconds(10) != PROXY_OK) {
    proxy_log_str(PROXY_LOG_CRITICAL, "sharedvm: tick period");
    return 0;
  }
  return 1;
}

PROXY_WASM_EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root_id) {
  struct root *r = root_id != 0 ? root_of(root_id) : NULL;
  if (r != NULL) r->ticks++;
}

static void add(const char *name, const char *key, const char *val) {
  char *h = concat("x-", name, "-", key, NULL);
  must(proxy_header_add(PROXY_MAP_REQUEST_HEADERS, h, val));
  free(h);
}

PROXY_WASM_EXPORT(proxy_on_request_headers)
proxy_action_t proxy_on_request_headers(uint32_t id, uint32_t headers, uint32_t end_of_stream) {
  streams++;
  uint32_t root_id = ctx_root(id);
  struct root *r = root_id != 0 ? root_of(root_id) : NULL;
  if (r == NULL) __builtin_trap();
  char *pn = proxy_property_get("plugin_name", strlen("plugin_name"));
  char n[24];
  add(r->name, "root", fmt_int(n, r->id));
  add(r->name, "plugin-name", pn != NULL ? pn : "");
  add(r->name, "vm-starts", fmt_int(n, vm_starts));
  add(r->name, "roots", fmt_int(n, live_roots));
  add(r->name, "streams", fmt_int(n, streams));
  add(r->name, "ticks", fmt_int(n, r->ticks));
  free(pn);
  return PROXY_CONTINUE;
}

PROXY_WASM_EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t id) {
  if (id != 0 && root_of(id) != NULL) live_roots--;
  return 1;
}

PROXY_WASM_EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t id) {
  struct root *r = id != 0 ? root_of(id) : NULL;
  if (r != NULL) {
    memset(r, 0, sizeof *r);
    return;
  }
  ctx_del(id);
}
