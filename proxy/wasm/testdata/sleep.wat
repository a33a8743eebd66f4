;; A filter that waits in a host function (WASI poll_oneoff, a real sleep)
;; in on_request_headers. The VM configuration's first byte picks how:
;;   s sleep 400 ms once, loop 100 times (as a Go guest's code after a host
;;     call does: a stop flag raised meanwhile would trap it there), then
;;     add x-ok: yes: a healthy call that waits far longer than its CPU
;;     deadline without running guest code
;;   S sleep 1 ms in a loop for ever (a guest that never ends but spins no
;;     CPU: only the wall-clock backstop stops it)
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $getbuf (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
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
  ;; sleep waits ns nanoseconds: one relative clock subscription at 4096
  ;; (userdata 0, tag 0 = clock, clock id 1 = monotonic, timeout, precision
  ;; 0, flags 0), its event at 4160, the event count at 4224.
  (func $sleep (param $ns i64)
    (i64.store (i32.const 4096) (i64.const 0))
    (i32.store8 (i32.const 4104) (i32.const 0))
    (i32.store (i32.const 4112) (i32.const 1))
    (i64.store (i32.const 4120) (local.get $ns))
    (i64.store (i32.const 4128) (i64.const 0))
    (i32.store16 (i32.const 4136) (i32.const 0))
    (if (call $poll (i32.const 4096) (i32.const 4160) (i32.const 1) (i32.const 4224))
      (then unreachable)))
  (func (export "proxy_on_context_create") (param i32 i32)
    (if (i32.eqz (local.get 1)) (then (global.set $heap (i32.const 65536)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (if (i32.eqz (call $getbuf (i32.const 6) (i32.const 0) (i32.const 1) (i32.const 2048) (i32.const 2052)))
      (then (global.set $mode (i32.load8_u (i32.load (i32.const 2048))))))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (if (i32.eq (global.get $mode) (i32.const 115))                       ;; 's'
      (then
        (call $sleep (i64.const 400000000))
        (local.set $i (i32.const 100))
        (loop $count
          (local.set $i (i32.sub (local.get $i) (i32.const 1)))
          (br_if $count (local.get $i)))))
    (if (i32.eq (global.get $mode) (i32.const 83))                        ;; 'S'
      (then (loop $forever (call $sleep (i64.const 1000000)) (br $forever))))
    (drop (call $add (i32.const 0) (i32.const 1072) (i32.const 4) (i32.const 1088) (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))
)
