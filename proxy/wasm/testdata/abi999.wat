;; An ABI version this host does not speak.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_9_9_9"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
)
