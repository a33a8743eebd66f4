/*
 * guest.h - small helpers the C conformance guests share (over
 * sdk/c/proxy_wasm.h): a table from context id to its root context id, C
 * strings, and traps for host calls that must not fail (as the Go guests'
 * must() panics).
 */
#ifndef WEFT_C_GUEST_H
#define WEFT_C_GUEST_H

#include "proxy_wasm.h"

/* must traps the VM when a host call fails: the host then applies the
 * filter's failure policy, as it does for a Go guest's panic. */
static inline void must(proxy_status_t st) {
  if (st != PROXY_OK) __builtin_trap();
}

/* ---- context id → root context id (0: free slot) ----------------------- */

#define CTX_SLOTS 4096
static uint32_t ctx_ids[CTX_SLOTS], ctx_roots[CTX_SLOTS];

static inline uint32_t ctx_slot(uint32_t id) { return (id * 2654435761u) % CTX_SLOTS; }

/* ctx_put remembers id's root context; it traps when the table is full. */
static inline void ctx_put(uint32_t id, uint32_t root) {
  for (uint32_t i = 0, s = ctx_slot(id); i < CTX_SLOTS; i++, s = (s + 1) % CTX_SLOTS) {
    if (ctx_ids[s] == 0 || ctx_ids[s] == id) {
      ctx_ids[s] = id;
      ctx_roots[s] = root;
      return;
    }
  }
  __builtin_trap();
}

/* ctx_root is id's root context, or 0 when id is not a stream or
 * connection context this guest knows. */
static inline uint32_t ctx_root(uint32_t id) {
  for (uint32_t i = 0, s = ctx_slot(id); i < CTX_SLOTS; i++, s = (s + 1) % CTX_SLOTS) {
    if (ctx_ids[s] == id) return ctx_roots[s];
    if (ctx_ids[s] == 0) return 0;
  }
  return 0;
}

/* ctx_del forgets id, moving later entries of its probe chain back. */
static inline void ctx_del(uint32_t id) {
  uint32_t s = ctx_slot(id), i = 0;
  for (; i < CTX_SLOTS && ctx_ids[s] != id; i++, s = (s + 1) % CTX_SLOTS) {
    if (ctx_ids[s] == 0) return;
  }
  if (i == CTX_SLOTS) return;
  ctx_ids[s] = 0;
  for (uint32_t n = (s + 1) % CTX_SLOTS; ctx_ids[n] != 0; n = (n + 1) % CTX_SLOTS) {
    uint32_t id2 = ctx_ids[n], root2 = ctx_roots[n];
    ctx_ids[n] = 0;
    ctx_put(id2, root2);
  }
}

/* ---- strings ------------------------------------------------------------ */

/* fmt_int writes n in decimal into buf (at least 24 bytes) and returns buf. */
static inline char *fmt_int(char *buf, long long n) {
  char tmp[24];
  int i = 0, neg = n < 0;
  unsigned long long u = neg ? -(unsigned long long)n : (unsigned long long)n;
  do {
    tmp[i++] = (char)('0' + u % 10);
    u /= 10;
  } while (u > 0);
  int j = 0;
  if (neg) buf[j++] = '-';
  while (i > 0) buf[j++] = tmp[--i];
  buf[j] = '\0';
  return buf;
}

/* concat returns a malloc'd string of the NULL-terminated list of parts. */
static inline char *concat(const char *first, ...) {
  __builtin_va_list ap;
  size_t n = 0;
  __builtin_va_start(ap, first);
  for (const char *p = first; p != NULL; p = __builtin_va_arg(ap, const char *)) n += strlen(p);
  __builtin_va_end(ap);
  char *s = (char *)malloc(n + 1);
  if (s == NULL) __builtin_trap();
  s[0] = '\0';
  __builtin_va_start(ap, first);
  for (const char *p = first; p != NULL; p = __builtin_va_arg(ap, const char *)) strcat(s, p);
  __builtin_va_end(ap);
  return s;
}

/* header_or_empty is a request header's value (malloc'd), "" when absent. */
static inline char *header_or_empty(proxy_map_type_t map, const char *key) {
  char *v = proxy_header_get(map, key);
  return v != NULL ? v : concat("", NULL);
}

/* shared_get is the shared data under key as a malloc'd string, "" when
 * there is none. */
static inline char *shared_get(const char *key) {
  char *ptr = NULL;
  size_t len = 0;
  uint32_t cas = 0;
  proxy_status_t st = proxy_get_shared_data(key, strlen(key), &ptr, &len, &cas);
  if (st == PROXY_NOT_FOUND) return concat("", NULL);
  must(st);
  char *s = (char *)malloc(len + 1);
  if (s == NULL) __builtin_trap();
  if (len > 0) memcpy(s, ptr, len);
  s[len] = '\0';
  free(ptr);
  return s;
}

/* shared_set stores val under key (no CAS). */
static inline void shared_set(const char *key, const char *val) {
  must(proxy_set_shared_data(key, strlen(key), val, strlen(val), 0));
}

#endif /* WEFT_C_GUEST_H */
