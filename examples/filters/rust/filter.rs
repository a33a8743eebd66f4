//! The Rust example filter: adds `x-weft-example: rust` to every request and
//! to every response, and copies the response's status into
//! `x-weft-example-status`. It uses the thin, crate-free binding in
//! sdk/rust/proxy_wasm.rs, so Debian's rustc 1.63 builds it offline.
//!
//! Build (from the repository root):
//!   /usr/bin/rustc --edition 2021 --crate-type=cdylib --target wasm32-wasi \
//!     -C opt-level=s -C panic=abort -C strip=symbols -o rust.wasm examples/filters/rust/filter.rs

#[path = "../../../sdk/rust/proxy_wasm.rs"]
mod proxy_wasm;

use proxy_wasm::{Action, LogLevel, MapType};

const NAME: &str = "x-weft-example";
const LANG: &[u8] = b"rust";

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_id: u32, _config_size: usize) -> u32 {
    proxy_wasm::log(LogLevel::Info, "rust example filter configured");
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _headers: u32, _end_of_stream: u32) -> u32 {
    let _ = proxy_wasm::add_header(MapType::RequestHeaders, NAME, LANG);
    Action::Continue as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_context_id: u32, _headers: u32, _end_of_stream: u32) -> u32 {
    let _ = proxy_wasm::add_header(MapType::ResponseHeaders, NAME, LANG);
    if let Some(status) = proxy_wasm::header(MapType::ResponseHeaders, ":status") {
        let _ = proxy_wasm::replace_header(MapType::ResponseHeaders, "x-weft-example-status", &status);
    }
    Action::Continue as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_context_id: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(_context_id: u32) {}
