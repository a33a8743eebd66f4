;; A filter that records the order of its stream callbacks, for the tests
;; of the combined guest entries (combined_test.go). Each stream callback
;; appends its code to the exported global "trace" (trace*10 + code):
;;   1 context create   2 request headers   3 response headers
;;   4 on_log           5 on_done           6 on_delete
;; The VM configuration's first byte picks a misbehaviour:
;;   n on_done returns false      x trap in a stream's context create
;;   l trap in on_log             d trap in on_done
;;   D trap in on_delete          S endless loop in on_done
(module
  (import "env" "proxy_get_buffer_bytes" (func $getbuf (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $mode (mut i32) (i32.const 0))
  (global $trace (export "trace") (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1))))))
    (local.get $p))
  (func $note (param $code i32)
    (global.set $trace (i32.add (i32.mul (global.get $trace) (i32.const 10)) (local.get $code))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (if (i32.eqz (call $getbuf (i32.const 6) (i32.const 0) (i32.const 1) (i32.const 2048) (i32.const 2052)))
      (then (global.set $mode (i32.load8_u (i32.load (i32.const 2048))))))
    (i32.const 1))
  (func (export "proxy_on_context_create") (param $ctx i32) (param $root i32)
    (if (local.get $root) (then
      (call $note (i32.const 1))
      (if (i32.eq (global.get $mode) (i32.const 120)) (then unreachable)))))   ;; 'x'
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $note (i32.const 2))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $note (i32.const 3))
    (i32.const 0))
  (func (export "proxy_on_log") (param i32)
    (call $note (i32.const 4))
    (if (i32.eq (global.get $mode) (i32.const 108)) (then unreachable)))      ;; 'l'
  (func (export "proxy_on_done") (param i32) (result i32)
    (call $note (i32.const 5))
    (if (i32.eq (global.get $mode) (i32.const 100)) (then unreachable))       ;; 'd'
    (if (i32.eq (global.get $mode) (i32.const 83))                            ;; 'S'
      (then (loop $forever (br $forever))))
    (i32.ne (global.get $mode) (i32.const 110)))                             ;; 'n'
  (func (export "proxy_on_delete") (param i32)
    (call $note (i32.const 6))
    (if (i32.eq (global.get $mode) (i32.const 68)) (then unreachable))))      ;; 'D'
