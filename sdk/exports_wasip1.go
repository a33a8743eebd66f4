//go:build wasip1

package sdk

// The Proxy-Wasm exports of every module built with the SDK. They call the same
// dispatch functions the emulated host calls through abi.Exports.

//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion021() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) *byte { return hostBuffer(size) }

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentID uint32) { onContextCreate(contextID, parentID) }

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID, size uint32) bool { return onVMStart(rootID, size) }

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID, size uint32) bool { return onConfigure(rootID, size) }

//go:wasmexport proxy_on_tick
func proxyOnTick(rootID uint32) { onTick(rootID) }

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(rootID, queueID uint32) { onQueueReady(rootID, queueID) }

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(contextID, numHeaders uint32, endOfStream bool) uint32 {
	return onRequestHeaders(contextID, numHeaders, endOfStream)
}

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(contextID, size uint32, endOfStream bool) uint32 {
	return onRequestBody(contextID, size, endOfStream)
}

//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(contextID, numTrailers uint32) uint32 {
	return onRequestTrailers(contextID, numTrailers)
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(contextID, numHeaders uint32, endOfStream bool) uint32 {
	return onResponseHeaders(contextID, numHeaders, endOfStream)
}

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(contextID, size uint32, endOfStream bool) uint32 {
	return onResponseBody(contextID, size, endOfStream)
}

//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(contextID, numTrailers uint32) uint32 {
	return onResponseTrailers(contextID, numTrailers)
}

//go:wasmexport proxy_on_http_call_response
func proxyOnHTTPCallResponse(contextID, token, numHeaders, bodySize, numTrailers uint32) {
	onHTTPCallResponse(contextID, token, numHeaders, bodySize, numTrailers)
}

//go:wasmexport proxy_on_log
func proxyOnLog(contextID uint32) { onLog(contextID) }

//go:wasmexport proxy_on_done
func proxyOnDone(contextID uint32) bool { return onDone(contextID) }

//go:wasmexport proxy_on_delete
func proxyOnDelete(contextID uint32) { onDelete(contextID) }

//go:wasmexport proxy_on_grpc_receive_initial_metadata
func proxyOnGRPCReceiveInitialMetadata(contextID, token, numHeaders uint32) {
	onGRPCInitialMetadata(contextID, token, numHeaders)
}

//go:wasmexport proxy_on_grpc_receive
func proxyOnGRPCReceive(contextID, token, size uint32) { onGRPCReceive(contextID, token, size) }

//go:wasmexport proxy_on_grpc_receive_trailing_metadata
func proxyOnGRPCReceiveTrailingMetadata(contextID, token, numTrailers uint32) {
	onGRPCTrailingMetadata(contextID, token, numTrailers)
}

//go:wasmexport proxy_on_grpc_close
func proxyOnGRPCClose(contextID, token, status uint32) { onGRPCClose(contextID, token, status) }

//go:wasmexport proxy_on_new_connection
func proxyOnNewConnection(contextID uint32) uint32 { return onNewConnection(contextID) }

//go:wasmexport proxy_on_downstream_data
func proxyOnDownstreamData(contextID, size uint32, endOfStream bool) uint32 {
	return onDownstreamData(contextID, size, endOfStream)
}

//go:wasmexport proxy_on_upstream_data
func proxyOnUpstreamData(contextID, size uint32, endOfStream bool) uint32 {
	return onUpstreamData(contextID, size, endOfStream)
}

//go:wasmexport proxy_on_downstream_connection_close
func proxyOnDownstreamConnectionClose(contextID, peerType uint32) {
	onDownstreamClose(contextID, peerType)
}

//go:wasmexport proxy_on_upstream_connection_close
func proxyOnUpstreamConnectionClose(contextID, peerType uint32) {
	onUpstreamClose(contextID, peerType)
}
