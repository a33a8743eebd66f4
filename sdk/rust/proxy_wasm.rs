//! proxy_wasm: a thin Rust binding of the Proxy-Wasm ABI 0.2.1 for Weft (and
//! any Proxy-Wasm host), in one file and without crates, so it builds with
//! Debian's rustc 1.63 and no network.
//!
//! It declares the host functions (module `env`), the ABI's constants and
//! safe helpers over them, and it exports the ABI version marker and the
//! allocator the host calls (`proxy_on_memory_allocate`). The filter includes
//! it as a module and exports the callbacks it needs itself:
//!
//! ```ignore
//! #[path = "../../../sdk/rust/proxy_wasm.rs"]
//! mod proxy_wasm;
//!
//! #[no_mangle]
//! pub extern "C" fn proxy_on_request_headers(_ctx: u32, _n: u32, _eos: u32) -> u32 {
//!     let _ = proxy_wasm::add_header(proxy_wasm::MapType::RequestHeaders, "x-hello", "rust");
//!     proxy_wasm::Action::Continue as u32
//! }
//! ```
//!
//! Build (Debian: `apt-get install -y rustc libstd-rust-dev-wasm32`; call
//! `/usr/bin/rustc`, rustup's rustc has no wasm32-wasi std here):
//!
//! ```sh
//! /usr/bin/rustc --edition 2021 --crate-type=cdylib --target wasm32-wasi \
//!     -C opt-level=s -C panic=abort -C strip=symbols -o f.wasm filter.rs
//! ```
#![allow(dead_code)]

use std::alloc::{alloc, Layout};

/// Status is what every host function returns.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    BadExpression = 5,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    ResultMismatch = 9,
    InternalFailure = 10,
    BrokenConnection = 11,
    Unimplemented = 12,
    Unknown = 0xffff_ffff,
}

impl Status {
    fn from_raw(n: u32) -> Status {
        match n {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::BadArgument,
            3 => Status::SerializationFailure,
            4 => Status::ParseFailure,
            5 => Status::BadExpression,
            6 => Status::InvalidMemoryAccess,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            9 => Status::ResultMismatch,
            10 => Status::InternalFailure,
            11 => Status::BrokenConnection,
            12 => Status::Unimplemented,
            _ => Status::Unknown,
        }
    }

    fn result(n: u32) -> Result<(), Status> {
        match Status::from_raw(n) {
            Status::Ok => Ok(()),
            s => Err(s),
        }
    }
}

/// Action is what the header and body callbacks return (as u32).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

/// LogLevel is the level of a proxy_log line.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// MapType names a header map.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    RequestHeaders = 0,
    RequestTrailers = 1,
    ResponseHeaders = 2,
    ResponseTrailers = 3,
    HttpCallResponseHeaders = 6,
    HttpCallResponseTrailers = 7,
}

/// BufferType names a buffer.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferType {
    RequestBody = 0,
    ResponseBody = 1,
    HttpCallResponseBody = 4,
    VmConfiguration = 6,
    PluginConfiguration = 7,
}

/// Raw host functions (module "env"); the safe helpers below wrap the
/// common ones.
pub mod raw {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_log(level: u32, msg: *const u8, len: usize) -> u32;
        pub fn proxy_get_current_time_nanoseconds(ret_time: *mut u64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(ms: u32) -> u32;
        pub fn proxy_get_property(path: *const u8, path_len: usize, ret_ptr: *mut *mut u8, ret_len: *mut usize) -> u32;
        pub fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_len: usize,
            ret_ptr: *mut *mut u8,
            ret_len: *mut usize,
        ) -> u32;
        pub fn proxy_add_header_map_value(map: u32, key: *const u8, key_len: usize, val: *const u8, val_len: usize) -> u32;
        pub fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_len: usize,
            val: *const u8,
            val_len: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(map: u32, key: *const u8, key_len: usize) -> u32;
        pub fn proxy_get_buffer_bytes(
            kind: u32,
            start: usize,
            max_len: usize,
            ret_ptr: *mut *mut u8,
            ret_len: *mut usize,
        ) -> u32;
        pub fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_len: usize,
            body: *const u8,
            body_len: usize,
            headers: *const u8,
            headers_len: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_continue_stream(stream: u32) -> u32;
        pub fn proxy_set_effective_context(context_id: u32) -> u32;
        pub fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, ret_id: *mut u32) -> u32;
        pub fn proxy_increment_metric(id: u32, delta: i64) -> u32;
    }
}

/// proxy_abi_version_0_2_1 marks the ABI version this module speaks.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// proxy_on_memory_allocate gives the host memory to hand data over in.
/// Such memory belongs to the filter; `take` frees it.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    match Layout::from_size_align(size.max(1), 1) {
        Ok(layout) => unsafe { alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

/// take turns a buffer the host allocated into a Vec that owns (and frees)
/// it. A null pointer or zero length is empty.
unsafe fn take(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // proxy_on_memory_allocate allocated exactly len bytes, align 1: the
    // layout a Vec<u8> of capacity len frees with.
    Vec::from_raw_parts(ptr, len, len)
}

/// log writes a log line at level through the host.
pub fn log(level: LogLevel, msg: &str) {
    unsafe {
        raw::proxy_log(level as u32, msg.as_ptr(), msg.len());
    }
}

/// header returns the value of a header (None when absent).
pub fn header(map: MapType, name: &str) -> Option<Vec<u8>> {
    let mut ptr: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    let st = unsafe { raw::proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut ptr, &mut len) };
    match Status::from_raw(st) {
        Status::Ok => Some(unsafe { take(ptr, len) }),
        _ => None,
    }
}

/// add_header adds a value to a header.
pub fn add_header(map: MapType, name: &str, value: &[u8]) -> Result<(), Status> {
    Status::result(unsafe {
        raw::proxy_add_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// replace_header sets a header, replacing every value it had.
pub fn replace_header(map: MapType, name: &str, value: &[u8]) -> Result<(), Status> {
    Status::result(unsafe {
        raw::proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// remove_header removes a header.
pub fn remove_header(map: MapType, name: &str) -> Result<(), Status> {
    Status::result(unsafe { raw::proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) })
}

/// buffer returns up to max_len bytes of a buffer from start.
pub fn buffer(kind: BufferType, start: usize, max_len: usize) -> Result<Vec<u8>, Status> {
    let mut ptr: *mut u8 = std::ptr::null_mut();
    let mut len: usize = 0;
    let st = unsafe { raw::proxy_get_buffer_bytes(kind as u32, start, max_len, &mut ptr, &mut len) };
    Status::result(st).map(|_| unsafe { take(ptr, len) })
}

/// plugin_config returns the plugin configuration; call it from
/// proxy_on_configure with the size the host passed.
pub fn plugin_config(size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    buffer(BufferType::PluginConfiguration, 0, size).unwrap_or_default()
}

/// send_response answers the current stream locally (no extra headers);
/// return Action::Pause from the callback afterwards.
pub fn send_response(status: u32, body: &[u8]) -> Result<(), Status> {
    let no_headers = [0u8; 4];
    Status::result(unsafe {
        raw::proxy_send_local_response(status, "".as_ptr(), 0, body.as_ptr(), body.len(), no_headers.as_ptr(), 4, -1)
    })
}
