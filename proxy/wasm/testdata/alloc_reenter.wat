;; A filter whose allocator calls back into the host for data, which the
;; host hands over through the allocator again: guest -> host -> allocator
;; -> host -> allocator ... for ever, with no loop and no call cycle inside
;; the module (every step goes through the host). The VM configuration's
;; first byte picks the mode: 'r' makes proxy_on_memory_allocate read the
;; request's :path (proxy_get_header_map_value) before it allocates; 'a'
;; makes it add x-alloc: yes (a host call that does not allocate) instead.
;; proxy_on_request_headers reads :path (which allocates) and adds x-ok: yes
;; when that worked.
(module
  (import "env" "proxy_get_buffer_bytes" (func $getbuf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1056) ":path")
  (data (i32.const 1072) "x-ok")
  (data (i32.const 1088) "yes")
  (data (i32.const 1104) "x-alloc")
  (global $heap (mut i32) (i32.const 65536))
  (global $mode (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.eq (global.get $mode) (i32.const 114))                       ;; 'r'
      (then (drop (call $get (i32.const 0) (i32.const 1056) (i32.const 5) (i32.const 2056) (i32.const 2060)))))
    (if (i32.eq (global.get $mode) (i32.const 97))                        ;; 'a'
      (then (drop (call $add (i32.const 0) (i32.const 1104) (i32.const 7) (i32.const 1088) (i32.const 3)))))
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 131072)) ;; the end of memory: start over
      (then (global.set $heap (i32.const 65536))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32)
    (if (i32.eqz (local.get 1)) (then (global.set $heap (i32.const 65536)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (if (i32.eqz (call $getbuf (i32.const 6) (i32.const 0) (i32.const 1) (i32.const 2048) (i32.const 2052)))
      (then (global.set $mode (i32.load8_u (i32.load (i32.const 2048))))))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 1056) (i32.const 5) (i32.const 2056) (i32.const 2060)))
      (then (drop (call $add (i32.const 0) (i32.const 1072) (i32.const 4) (i32.const 1088) (i32.const 3)))))
    (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
