//go:build wasip1

package abi

import "unsafe"

// The raw imports. Pointers and strings are lowered to i32 (ptr, len) by the
// compiler; a host writing a 32-bit pointer into an 8-byte Go pointer
// variable leaves its (zero) upper half alone.

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg string) uint32

//go:wasmimport env proxy_get_log_level
func proxyGetLogLevel(ret *uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTimeNanoseconds(ret *uint64) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriodMilliseconds(ms uint32) uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(path *byte, pathLen uint32, retPtr unsafe.Pointer, retLen *uint32) uint32

//go:wasmimport env proxy_set_property
func proxySetProperty(path *byte, pathLen uint32, val *byte, valLen uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(mapType uint32, retPtr unsafe.Pointer, retLen *uint32) uint32

//go:wasmimport env proxy_set_header_map_pairs
func proxySetHeaderMapPairs(mapType uint32, data *byte, size uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(mapType uint32, key string, retPtr unsafe.Pointer, retLen *uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mapType uint32, key string, value string) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(mapType uint32, key string, value string) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(mapType uint32, key string) uint32

//go:wasmimport env proxy_get_header_map_size
func proxyGetHeaderMapSize(mapType uint32, ret *uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bufferType, start, maxSize uint32, retPtr unsafe.Pointer, retLen *uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxySetBufferBytes(bufferType, start, size uint32, data *byte, dataLen uint32) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(streamType uint32) uint32

//go:wasmimport env proxy_close_stream
func proxyCloseStream(streamType uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(status uint32, details string, body *byte, bodyLen uint32, headers *byte, headersLen uint32, grpcStatus int32) uint32

//go:wasmimport env proxy_http_call
func proxyHTTPCall(cluster string, headers *byte, headersLen uint32, body *byte, bodyLen uint32, trailers *byte, trailersLen uint32, timeoutMS uint32, retToken *uint32) uint32

//go:wasmimport env proxy_grpc_call
func proxyGRPCCall(cluster, service, method string, md *byte, mdLen uint32, msg *byte, msgLen uint32, timeoutMS uint32, retToken *uint32) uint32

//go:wasmimport env proxy_grpc_stream
func proxyGRPCStream(cluster, service, method string, md *byte, mdLen uint32, retToken *uint32) uint32

//go:wasmimport env proxy_grpc_send
func proxyGRPCSend(token uint32, msg *byte, msgLen uint32, endStream uint32) uint32

//go:wasmimport env proxy_grpc_cancel
func proxyGRPCCancel(token uint32) uint32

//go:wasmimport env proxy_grpc_close
func proxyGRPCClose(token uint32) uint32

//go:wasmimport env proxy_get_status
func proxyGetStatus(retCode *uint32, retPtr unsafe.Pointer, retLen *uint32) uint32

//go:wasmimport env proxy_get_shared_data
func proxyGetSharedData(key string, retPtr unsafe.Pointer, retLen *uint32, retCas *uint32) uint32

//go:wasmimport env proxy_set_shared_data
func proxySetSharedData(key string, val *byte, valLen uint32, cas uint32) uint32

//go:wasmimport env proxy_register_shared_queue
func proxyRegisterSharedQueue(name string, retID *uint32) uint32

//go:wasmimport env proxy_resolve_shared_queue
func proxyResolveSharedQueue(vmID string, name string, retID *uint32) uint32

//go:wasmimport env proxy_enqueue_shared_queue
func proxyEnqueueSharedQueue(id uint32, val *byte, valLen uint32) uint32

//go:wasmimport env proxy_dequeue_shared_queue
func proxyDequeueSharedQueue(id uint32, retPtr unsafe.Pointer, retLen *uint32) uint32

//go:wasmimport env proxy_define_metric
func proxyDefineMetric(metricType uint32, name string, retID *uint32) uint32

//go:wasmimport env proxy_increment_metric
func proxyIncrementMetric(id uint32, delta int64) uint32

//go:wasmimport env proxy_record_metric
func proxyRecordMetric(id uint32, value uint64) uint32

//go:wasmimport env proxy_get_metric
func proxyGetMetric(id uint32, ret *uint64) uint32

//go:wasmimport env proxy_set_effective_context
func proxySetEffectiveContext(contextID uint32) uint32

//go:wasmimport env proxy_done
func proxyDone() uint32

//go:wasmimport env proxy_call_foreign_function
func proxyCallForeignFunction(name string, args *byte, argsLen uint32, retPtr unsafe.Pointer, retLen *uint32) uint32

// ptr returns the address of b's first byte (nil when empty).
func ptr(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return unsafe.SliceData(b)
}

// The return slots of host calls. Package variables, not locals: a local
// whose address goes to a wasmimport function escapes to the heap, so each
// call allocated its slots, and an allocation costs a Go guest more than the
// call. The guest runs one callback at a time, and nothing between a host
// call and the read of its slots calls the host (proxy_on_memory_allocate,
// which may run during the call, does not), so one set serves every call.
// Each is cleared before its call: a host that fails writes nothing.
var (
	retPtr *byte
	retLen uint32
	retCAS uint32
	retU32 uint32
	retU64 uint64
)

// takeReturned is returned(retPtr, retLen), dropping the slot's reference.
func takeReturned() []byte {
	p, n := retPtr, retLen
	retPtr = nil
	return returned(p, n)
}

// returned turns a (pointer, length) the host wrote into a slice. The bytes
// were allocated by proxy_on_memory_allocate for this call alone, so the
// slice owns them.
func returned(p *byte, n uint32) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice(p, n)
}

// Log is proxy_log.
func Log(level uint32, msg string) uint32 { return proxyLog(level, msg) }

// GetLogLevel is proxy_get_log_level.
func GetLogLevel() (uint32, uint32) {
	retU32 = 0
	st := proxyGetLogLevel(&retU32)
	return retU32, st
}

// CurrentTimeNanos is proxy_get_current_time_nanoseconds.
func CurrentTimeNanos() uint64 {
	retU64 = 0
	proxyGetCurrentTimeNanoseconds(&retU64)
	return retU64
}

// SetTickPeriod is proxy_set_tick_period_milliseconds.
func SetTickPeriod(ms uint32) uint32 { return proxySetTickPeriodMilliseconds(ms) }

// GetProperty is proxy_get_property; path is NUL-separated.
func GetProperty(path []byte) ([]byte, uint32) {
	retPtr, retLen = nil, 0
	st := proxyGetProperty(ptr(path), uint32(len(path)), unsafe.Pointer(&retPtr), &retLen)
	return takeReturned(), st
}

// SetProperty is proxy_set_property.
func SetProperty(path, val []byte) uint32 {
	return proxySetProperty(ptr(path), uint32(len(path)), ptr(val), uint32(len(val)))
}

// GetHeaderMapPairs is proxy_get_header_map_pairs (a serialized map).
func GetHeaderMapPairs(mapType uint32) ([]byte, uint32) {
	retPtr, retLen = nil, 0
	st := proxyGetHeaderMapPairs(mapType, unsafe.Pointer(&retPtr), &retLen)
	return takeReturned(), st
}

// SetHeaderMapPairs is proxy_set_header_map_pairs.
func SetHeaderMapPairs(mapType uint32, data []byte) uint32 {
	return proxySetHeaderMapPairs(mapType, ptr(data), uint32(len(data)))
}

// GetHeaderMapValue is proxy_get_header_map_value.
func GetHeaderMapValue(mapType uint32, key string) ([]byte, uint32) {
	retPtr, retLen = nil, 0
	st := proxyGetHeaderMapValue(mapType, key, unsafe.Pointer(&retPtr), &retLen)
	return takeReturned(), st
}

// AddHeaderMapValue is proxy_add_header_map_value.
func AddHeaderMapValue(mapType uint32, key, value string) uint32 {
	return proxyAddHeaderMapValue(mapType, key, value)
}

// ReplaceHeaderMapValue is proxy_replace_header_map_value.
func ReplaceHeaderMapValue(mapType uint32, key, value string) uint32 {
	return proxyReplaceHeaderMapValue(mapType, key, value)
}

// RemoveHeaderMapValue is proxy_remove_header_map_value.
func RemoveHeaderMapValue(mapType uint32, key string) uint32 {
	return proxyRemoveHeaderMapValue(mapType, key)
}

// GetHeaderMapSize is proxy_get_header_map_size.
func GetHeaderMapSize(mapType uint32) (uint32, uint32) {
	retU32 = 0
	st := proxyGetHeaderMapSize(mapType, &retU32)
	return retU32, st
}

// GetBufferBytes is proxy_get_buffer_bytes.
func GetBufferBytes(bufferType, start, maxSize uint32) ([]byte, uint32) {
	retPtr, retLen = nil, 0
	st := proxyGetBufferBytes(bufferType, start, maxSize, unsafe.Pointer(&retPtr), &retLen)
	return takeReturned(), st
}

// SetBufferBytes is proxy_set_buffer_bytes.
func SetBufferBytes(bufferType, start, size uint32, data []byte) uint32 {
	return proxySetBufferBytes(bufferType, start, size, ptr(data), uint32(len(data)))
}

// ContinueStream is proxy_continue_stream.
func ContinueStream(streamType uint32) uint32 { return proxyContinueStream(streamType) }

// CloseStream is proxy_close_stream.
func CloseStream(streamType uint32) uint32 { return proxyCloseStream(streamType) }

// SendLocalResponse is proxy_send_local_response; headers is a serialized map.
func SendLocalResponse(status uint32, details string, body, headers []byte, grpcStatus int32) uint32 {
	return proxySendLocalResponse(status, details, ptr(body), uint32(len(body)), ptr(headers), uint32(len(headers)), grpcStatus)
}

// HTTPCall is proxy_http_call; headers and trailers are serialized maps.
func HTTPCall(cluster string, headers, body, trailers []byte, timeoutMS uint32) (uint32, uint32) {
	retU32 = 0
	st := proxyHTTPCall(cluster, ptr(headers), uint32(len(headers)), ptr(body), uint32(len(body)),
		ptr(trailers), uint32(len(trailers)), timeoutMS, &retU32)
	return retU32, st
}

// GRPCCall is proxy_grpc_call; md is a serialized map, msg a protobuf message.
func GRPCCall(cluster, service, method string, md, msg []byte, timeoutMS uint32) (uint32, uint32) {
	retU32 = 0
	st := proxyGRPCCall(cluster, service, method, ptr(md), uint32(len(md)), ptr(msg), uint32(len(msg)), timeoutMS, &retU32)
	return retU32, st
}

// GRPCStream is proxy_grpc_stream.
func GRPCStream(cluster, service, method string, md []byte) (uint32, uint32) {
	retU32 = 0
	st := proxyGRPCStream(cluster, service, method, ptr(md), uint32(len(md)), &retU32)
	return retU32, st
}

// GRPCSend is proxy_grpc_send.
func GRPCSend(token uint32, msg []byte, endStream bool) uint32 {
	var end uint32
	if endStream {
		end = 1
	}
	return proxyGRPCSend(token, ptr(msg), uint32(len(msg)), end)
}

// GRPCCancel is proxy_grpc_cancel.
func GRPCCancel(token uint32) uint32 { return proxyGRPCCancel(token) }

// GRPCClose is proxy_grpc_close.
func GRPCClose(token uint32) uint32 { return proxyGRPCClose(token) }

// GetStatus is proxy_get_status: the gRPC status of the call closing now.
func GetStatus() (uint32, []byte, uint32) {
	retU32, retPtr, retLen = 0, nil, 0
	st := proxyGetStatus(&retU32, unsafe.Pointer(&retPtr), &retLen)
	return retU32, takeReturned(), st
}

// GetSharedData is proxy_get_shared_data.
func GetSharedData(key string) ([]byte, uint32, uint32) {
	retPtr, retLen, retCAS = nil, 0, 0
	st := proxyGetSharedData(key, unsafe.Pointer(&retPtr), &retLen, &retCAS)
	cas := retCAS
	return takeReturned(), cas, st
}

// SetSharedData is proxy_set_shared_data.
func SetSharedData(key string, val []byte, cas uint32) uint32 {
	return proxySetSharedData(key, ptr(val), uint32(len(val)), cas)
}

// RegisterSharedQueue is proxy_register_shared_queue.
func RegisterSharedQueue(name string) (uint32, uint32) {
	var id uint32
	st := proxyRegisterSharedQueue(name, &id)
	return id, st
}

// ResolveSharedQueue is proxy_resolve_shared_queue.
func ResolveSharedQueue(vmID, name string) (uint32, uint32) {
	var id uint32
	st := proxyResolveSharedQueue(vmID, name, &id)
	return id, st
}

// EnqueueSharedQueue is proxy_enqueue_shared_queue.
func EnqueueSharedQueue(id uint32, val []byte) uint32 {
	return proxyEnqueueSharedQueue(id, ptr(val), uint32(len(val)))
}

// DequeueSharedQueue is proxy_dequeue_shared_queue.
func DequeueSharedQueue(id uint32) ([]byte, uint32) {
	retPtr, retLen = nil, 0
	st := proxyDequeueSharedQueue(id, unsafe.Pointer(&retPtr), &retLen)
	return takeReturned(), st
}

// DefineMetric is proxy_define_metric.
func DefineMetric(metricType uint32, name string) (uint32, uint32) {
	var id uint32
	st := proxyDefineMetric(metricType, name, &id)
	return id, st
}

// IncrementMetric is proxy_increment_metric.
func IncrementMetric(id uint32, delta int64) uint32 { return proxyIncrementMetric(id, delta) }

// RecordMetric is proxy_record_metric.
func RecordMetric(id uint32, value uint64) uint32 { return proxyRecordMetric(id, value) }

// GetMetric is proxy_get_metric.
func GetMetric(id uint32) (uint64, uint32) {
	retU64 = 0
	st := proxyGetMetric(id, &retU64)
	return retU64, st
}

// SetEffectiveContext is proxy_set_effective_context.
func SetEffectiveContext(contextID uint32) uint32 { return proxySetEffectiveContext(contextID) }

// Done is proxy_done.
func Done() uint32 { return proxyDone() }

// CallForeignFunction is proxy_call_foreign_function.
func CallForeignFunction(name string, args []byte) ([]byte, uint32) {
	retPtr, retLen = nil, 0
	st := proxyCallForeignFunction(name, ptr(args), uint32(len(args)), unsafe.Pointer(&retPtr), &retLen)
	return takeReturned(), st
}
