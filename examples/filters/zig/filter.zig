//! The Zig example filter: adds "x-weft-example: zig" to every request and
//! to every response, and copies the response's status into
//! "x-weft-example-status". It uses the thin binding in sdk/zig/proxy_wasm.zig.
//!
//! Build (from the repository root, Zig 0.11.0):
//!   zig build-lib -target wasm32-freestanding -dynamic -rdynamic -O ReleaseSmall \
//!     --mod proxy_wasm::sdk/zig/proxy_wasm.zig --deps proxy_wasm \
//!     examples/filters/zig/filter.zig -femit-bin=zig.wasm
const pw = @import("proxy_wasm");

comptime {
    // Reference the binding so its exports (ABI marker, allocator) are kept.
    _ = pw;
}

const name = "x-weft-example";
const lang = "zig";

export fn proxy_on_context_create(context_id: u32, parent_id: u32) void {
    _ = context_id;
    _ = parent_id;
}

export fn proxy_on_configure(root_id: u32, config_size: usize) u32 {
    _ = root_id;
    _ = config_size;
    pw.log(.info, "zig example filter configured");
    return 1;
}

export fn proxy_on_request_headers(context_id: u32, headers: u32, end_of_stream: u32) u32 {
    _ = context_id;
    _ = headers;
    _ = end_of_stream;
    _ = pw.addHeader(.request_headers, name, lang);
    return @intFromEnum(pw.Action.@"continue");
}

export fn proxy_on_response_headers(context_id: u32, headers: u32, end_of_stream: u32) u32 {
    _ = context_id;
    _ = headers;
    _ = end_of_stream;
    _ = pw.addHeader(.response_headers, name, lang);
    if (pw.header(.response_headers, ":status")) |status| {
        defer pw.free(status);
        _ = pw.replaceHeader(.response_headers, "x-weft-example-status", status);
    }
    return @intFromEnum(pw.Action.@"continue");
}

export fn proxy_on_done(context_id: u32) u32 {
    _ = context_id;
    return 1;
}

export fn proxy_on_delete(context_id: u32) void {
    _ = context_id;
}
