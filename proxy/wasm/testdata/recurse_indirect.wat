;; A filter whose on_request_headers recurses for ever through call_indirect
;; only (a function pointer calling itself, as an interface method or a
;; closure does in compiled guests): a fib(90) through a table, 90 frames
;; deep at most, 2^90 calls, no loop and no direct call cycle. Only the
;; interrupt rewrite's check before an indirect call that can recurse stops
;; it. The VM configuration's first byte picks the mode: 'r' recurses, any
;; other adds x-ok: yes and continues.
(module
  (import "env" "proxy_get_buffer_bytes" (func $getbuf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1072) "x-ok")
  (data (i32.const 1088) "yes")
  (type $fn (func (param i64) (result i64)))
  (table 1 funcref)
  (elem (i32.const 0) func $fib)
  (global $heap (mut i32) (i32.const 65536))
  (global $mode (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func $fib (type $fn)
    (if (result i64) (i64.lt_u (local.get 0) (i64.const 2))
      (then (local.get 0))
      (else (i64.add
        (call_indirect (type $fn) (i64.sub (local.get 0) (i64.const 1)) (i32.const 0))
        (call_indirect (type $fn) (i64.sub (local.get 0) (i64.const 2)) (i32.const 0))))))
  (func (export "proxy_on_context_create") (param i32 i32)
    (if (i32.eqz (local.get 1)) (then (global.set $heap (i32.const 65536)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (if (i32.eqz (call $getbuf (i32.const 6) (i32.const 0) (i32.const 1) (i32.const 2048) (i32.const 2052)))
      (then (global.set $mode (i32.load8_u (i32.load (i32.const 2048))))))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eq (global.get $mode) (i32.const 114))                       ;; 'r'
      (then (drop (call_indirect (type $fn) (i64.const 90) (i32.const 0)))))
    (drop (call $add (i32.const 0) (i32.const 1072) (i32.const 4) (i32.const 1088) (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
