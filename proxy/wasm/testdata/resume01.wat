;; Resumes paused streams with the older stream calls: every request is
;; paused in on_request_headers and every response in on_response_headers;
;; the root context's tick (every 5 ms) ends a request's pause with
;; proxy_continue_request (0.1.0), or with proxy_close_stream when the
;; request has an x-close header, and a response's with
;; proxy_continue_response (0.1.0). It also calls
;; proxy_clear_route_cache and proxy_done where a guest would; a host
;; function that is missing fails instantiation, one that answers other
;; than OK traps.
(module
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_continue_request" (func $continue_request (result i32)))
  (import "env" "proxy_continue_response" (func $continue_response (result i32)))
  (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))
  (import "env" "proxy_clear_route_cache" (func $clear_route_cache (result i32)))
  (import "env" "proxy_done" (func $done (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "x-close")
  (global $heap (mut i32) (i32.const 65536))
  (global $paused (mut i32) (i32.const 0))
  (global $paused_resp (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $tick (i32.const 5)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (if (call $clear_route_cache) (then unreachable))
    (global.set $paused (local.get $ctx))
    (i32.const 1))
  (func (export "proxy_on_response_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $paused_resp (local.get $ctx))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (if (global.get $paused_resp)
      (then
        (drop (call $effective (global.get $paused_resp)))
        (global.set $paused_resp (i32.const 0))
        (if (call $continue_response) (then unreachable))
        (return)))
    (if (i32.eqz (global.get $paused)) (then return))
    (drop (call $effective (global.get $paused)))
    (global.set $paused (i32.const 0))
    (global.set $heap (i32.const 65536))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1024) (i32.const 7) (i32.const 2048) (i32.const 2052)))
      (then
        (if (call $close (i32.const 0)) (then unreachable))
        (return)))
    (if (call $continue_request) (then unreachable)))
  (func (export "proxy_on_done") (param i32) (result i32)
    (if (call $done) (then unreachable))
    (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
