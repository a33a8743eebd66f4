package abi

// Guest is the table of guest callbacks. Package sdk fills Exports in its
// init; the wasmexport shims (wasip1) and the emulated host (other
// platforms) call through it.
type Guest struct {
	OnContextCreate    func(contextID, parentID uint32)
	OnVMStart          func(rootID, size uint32) bool
	OnConfigure        func(rootID, size uint32) bool
	OnTick             func(rootID uint32)
	OnQueueReady       func(rootID, queueID uint32)
	OnRequestHeaders   func(contextID, numHeaders uint32, endOfStream bool) uint32
	OnRequestBody      func(contextID, size uint32, endOfStream bool) uint32
	OnRequestTrailers  func(contextID, numTrailers uint32) uint32
	OnResponseHeaders  func(contextID, numHeaders uint32, endOfStream bool) uint32
	OnResponseBody     func(contextID, size uint32, endOfStream bool) uint32
	OnResponseTrailers func(contextID, numTrailers uint32) uint32
	OnHTTPCallResponse func(contextID, token, numHeaders, bodySize, numTrailers uint32)
	// gRPC call-outs: proxy_on_grpc_receive_initial_metadata, _receive,
	// _receive_trailing_metadata and _close.
	OnGRPCInitialMetadata  func(contextID, token, numHeaders uint32)
	OnGRPCReceive          func(contextID, token, size uint32)
	OnGRPCTrailingMetadata func(contextID, token, numTrailers uint32)
	OnGRPCClose            func(contextID, token, status uint32)
	// Network (L4) filters: proxy_on_new_connection,
	// proxy_on_downstream_data, proxy_on_upstream_data,
	// proxy_on_downstream_connection_close and
	// proxy_on_upstream_connection_close.
	OnNewConnection   func(contextID uint32) uint32
	OnDownstreamData  func(contextID, size uint32, endOfStream bool) uint32
	OnUpstreamData    func(contextID, size uint32, endOfStream bool) uint32
	OnDownstreamClose func(contextID, peerType uint32)
	OnUpstreamClose   func(contextID, peerType uint32)
	OnLog             func(contextID uint32)
	OnDone            func(contextID uint32) bool
	OnDelete          func(contextID uint32)
	// Plugin returns the plugin value of a root context (nil if none).
	Plugin func(rootID uint32) any
	// Reset forgets every context and registration-independent state (host
	// tests start each emulated VM from scratch).
	Reset func()
}

// Exports is the guest's callback table.
var Exports Guest
