;; The WAT example filter, written directly against the Proxy-Wasm ABI 0.2.1:
;; adds "x-weft-example: wat" to every request and to every response, and
;; copies the response's status into "x-weft-example-status".
;;
;; Build: wat2wasm examples/filters/wat/filter.wat -o wat.wasm   (apt-get install -y wabt)
;;
;; Memory: constants at 1024.., two result slots at 512/516, and a bump
;; heap from 4096 for what the host hands over. Everything the host hands
;; over is used within one callback, so each callback starts the heap afresh.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 1024) "x-weft-example")          ;; 14 bytes
  (data (i32.const 1040) "wat")                     ;; 3
  (data (i32.const 1056) ":status")                 ;; 7
  (data (i32.const 1072) "x-weft-example-status")   ;; 21
  (data (i32.const 1100) "wat example filter configured") ;; 29

  (global $heap_base i32 (i32.const 4096))
  (global $heap (mut i32) (i32.const 4096))

  ;; The ABI version this module speaks.
  (func (export "proxy_abi_version_0_2_1"))

  ;; Bump allocator, growing memory as needed; 0 when memory cannot grow.
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $ptr i32) (local $end i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then
        (if (i32.lt_s
              (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1)))
              (i32.const 0))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func (export "proxy_on_context_create") (param i32 i32))

  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 1100) (i32.const 29)))
    (i32.const 1))

  ;; Request: add x-weft-example: wat (map 0 = request headers).
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 1024) (i32.const 14) (i32.const 1040) (i32.const 3)))
    (i32.const 0))

  ;; Response (map 2): add x-weft-example: wat; copy :status into
  ;; x-weft-example-status when the host has it.
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (global.set $heap (global.get $heap_base))
    (drop (call $add (i32.const 2) (i32.const 1024) (i32.const 14) (i32.const 1040) (i32.const 3)))
    (if (i32.eqz (call $get (i32.const 2) (i32.const 1056) (i32.const 7) (i32.const 512) (i32.const 516)))
      (then
        (drop (call $replace (i32.const 2) (i32.const 1072) (i32.const 21)
                (i32.load (i32.const 512)) (i32.load (i32.const 516))))))
    (global.set $heap (global.get $heap_base))
    (i32.const 0))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
