package wasm

// grpcFuncs: gRPC call-outs are not offered; they answer Unimplemented (12)
// so SDKs report a clear error. proxy_call_foreign_function dispatches to
// the registry of abi_foreign.go (unknown names answer NotFound, as in
// Envoy).
func grpcFuncs() []abiFunc {
	unimpl := host(func(*vm, []uint64) uint32 { return statusUnimplemented })
	foreign := newForeignRegistry()
	return []abiFunc{
		{"proxy_grpc_call", unimpl, params(12)},
		{"proxy_grpc_stream", unimpl, params(9)},
		{"proxy_grpc_send", unimpl, params(4)},
		{"proxy_grpc_cancel", unimpl, params(1)},
		{"proxy_grpc_close", unimpl, params(1)},
		{"proxy_call_foreign_function", host(foreign.call), params(6)},
	}
}
