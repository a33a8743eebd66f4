;; A filter that misbehaves on purpose. The VM configuration's first byte
;; picks the callback and the way:
;;   v trap in on_vm_start        f on_vm_start returns false
;;   c trap in on_configure       x trap in a stream's on_context_create
;;   h trap in request headers    b trap in request body
;;   r trap in response headers   B trap in response body
;;   l trap in on_log             d trap in on_done
;;   L endless loop in request headers
;;   o out-of-bounds load in request headers
;;   m grow memory until refused, then add x-grow: refused and continue
;;   M grow memory until refused, write to every 4 KiB page of it (so it is
;;     resident), then trap: a hog that dies at its limit
;; Stream callbacks misbehave only when the request has an x-boom header,
;; so the next stream without it shows the replacement VM works.
(module
  (import "env" "proxy_get_buffer_bytes" (func $getbuf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "x-boom")
  (data (i32.const 1040) "x-grow")
  (data (i32.const 1056) "refused")
  (data (i32.const 1072) "x-ok")
  (data (i32.const 1088) "yes")
  (global $heap (mut i32) (i32.const 65536))
  (global $mode (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1))))))
    (local.get $p))
  (func $boom (result i32)
    (i32.eqz (call $get (i32.const 0) (i32.const 1024) (i32.const 6) (i32.const 2048) (i32.const 2052))))
  (func $maybe (param $m i32)
    (if (i32.and (i32.eq (global.get $mode) (local.get $m)) (call $boom))
      (then unreachable)))
  (func $hog
    (local $p i32)
    (block $full (loop $grow
      (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
      (br $grow)))
    (local.set $p (i32.const 131072))
    (block $done (loop $touch
      (br_if $done (i32.ge_u (local.get $p) (i32.mul (memory.size) (i32.const 65536))))
      (i32.store8 (local.get $p) (i32.const 1))
      (local.set $p (i32.add (local.get $p) (i32.const 4096)))
      (br $touch)))
    unreachable)
  (func (export "proxy_on_context_create") (param $ctx i32) (param $root i32)
    (if (local.get $root) (then
      (global.set $heap (i32.const 65536))
      (call $maybe (i32.const 120)))))           ;; 'x'
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (if (i32.eqz (call $getbuf (i32.const 6) (i32.const 0) (i32.const 1) (i32.const 2048) (i32.const 2052)))
      (then (global.set $mode (i32.load8_u (i32.load (i32.const 2048))))))
    (if (i32.eq (global.get $mode) (i32.const 118)) (then unreachable))   ;; 'v'
    (i32.ne (global.get $mode) (i32.const 102)))                          ;; 'f'
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (if (i32.eq (global.get $mode) (i32.const 99)) (then unreachable))    ;; 'c'
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $maybe (i32.const 104))                                         ;; 'h'
    (if (i32.and (i32.eq (global.get $mode) (i32.const 76)) (call $boom)) ;; 'L'
      (then (loop $forever (br $forever))))
    (if (i32.and (i32.eq (global.get $mode) (i32.const 111)) (call $boom)) ;; 'o'
      (then (drop (i32.load (i32.const -8)))))
    (if (i32.and (i32.eq (global.get $mode) (i32.const 109)) (call $boom)) ;; 'm'
      (then
        (block $done (loop $grow
          (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
          (br $grow)))
        (drop (call $add (i32.const 0) (i32.const 1040) (i32.const 6) (i32.const 1056) (i32.const 7)))))
    (if (i32.and (i32.eq (global.get $mode) (i32.const 77)) (call $boom)) ;; 'M'
      (then (call $hog)))
    (drop (call $add (i32.const 0) (i32.const 1072) (i32.const 4) (i32.const 1088) (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (call $maybe (i32.const 98)) (i32.const 0))                           ;; 'b'
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $maybe (i32.const 114)) (i32.const 0))                          ;; 'r'
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (call $maybe (i32.const 66)) (i32.const 0))                           ;; 'B'
  (func (export "proxy_on_log") (param i32)
    (call $maybe (i32.const 108)))                                        ;; 'l'
  (func (export "proxy_on_done") (param i32) (result i32)
    (call $maybe (i32.const 100)) (i32.const 1))                          ;; 'd'
  (func (export "proxy_on_delete") (param i32))
)
