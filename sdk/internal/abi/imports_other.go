//go:build !wasip1

package abi

import "sync/atomic"

// Host is what an emulated host implements on platforms other than wasip1:
// one method per host call, with the same arguments and results as the
// package functions. Slices it returns are owned by the caller.
type Host interface {
	Log(level uint32, msg string) uint32
	GetLogLevel() (uint32, uint32)
	CurrentTimeNanos() uint64
	SetTickPeriod(ms uint32) uint32
	GetProperty(path []byte) ([]byte, uint32)
	SetProperty(path, val []byte) uint32
	GetHeaderMapPairs(mapType uint32) ([]byte, uint32)
	SetHeaderMapPairs(mapType uint32, data []byte) uint32
	GetHeaderMapValue(mapType uint32, key string) ([]byte, uint32)
	AddHeaderMapValue(mapType uint32, key, value string) uint32
	ReplaceHeaderMapValue(mapType uint32, key, value string) uint32
	RemoveHeaderMapValue(mapType uint32, key string) uint32
	GetHeaderMapSize(mapType uint32) (uint32, uint32)
	GetBufferBytes(bufferType, start, maxSize uint32) ([]byte, uint32)
	SetBufferBytes(bufferType, start, size uint32, data []byte) uint32
	ContinueStream(streamType uint32) uint32
	CloseStream(streamType uint32) uint32
	SendLocalResponse(status uint32, details string, body, headers []byte, grpcStatus int32) uint32
	HTTPCall(cluster string, headers, body, trailers []byte, timeoutMS uint32) (uint32, uint32)
	GRPCCall(cluster, service, method string, md, msg []byte, timeoutMS uint32) (uint32, uint32)
	GRPCStream(cluster, service, method string, md []byte) (uint32, uint32)
	GRPCSend(token uint32, msg []byte, endStream bool) uint32
	GRPCCancel(token uint32) uint32
	GRPCClose(token uint32) uint32
	GetStatus() (uint32, []byte, uint32)
	GetSharedData(key string) ([]byte, uint32, uint32)
	SetSharedData(key string, val []byte, cas uint32) uint32
	RegisterSharedQueue(name string) (uint32, uint32)
	ResolveSharedQueue(vmID, name string) (uint32, uint32)
	EnqueueSharedQueue(id uint32, val []byte) uint32
	DequeueSharedQueue(id uint32) ([]byte, uint32)
	DefineMetric(metricType uint32, name string) (uint32, uint32)
	IncrementMetric(id uint32, delta int64) uint32
	RecordMetric(id uint32, value uint64) uint32
	GetMetric(id uint32) (uint64, uint32)
	SetEffectiveContext(contextID uint32) uint32
	Done() uint32
	CallForeignFunction(name string, args []byte) ([]byte, uint32)
}

type hostBox struct{ h Host }

var current atomic.Pointer[hostBox]

// SetHost installs the emulated host every host call goes to (nil removes
// it). Only one host is active at a time.
func SetHost(h Host) {
	if h == nil {
		current.Store(nil)
		return
	}
	current.Store(&hostBox{h})
}

func host() Host {
	b := current.Load()
	if b == nil {
		panic("sdk: no Proxy-Wasm host: outside GOOS=wasip1 a filter runs only under an emulated host (sdk/sdktest)")
	}
	return b.h
}

// Log is proxy_log.
func Log(level uint32, msg string) uint32 { return host().Log(level, msg) }

// GetLogLevel is proxy_get_log_level.
func GetLogLevel() (uint32, uint32) { return host().GetLogLevel() }

// CurrentTimeNanos is proxy_get_current_time_nanoseconds.
func CurrentTimeNanos() uint64 { return host().CurrentTimeNanos() }

// SetTickPeriod is proxy_set_tick_period_milliseconds.
func SetTickPeriod(ms uint32) uint32 { return host().SetTickPeriod(ms) }

// GetProperty is proxy_get_property; path is NUL-separated.
func GetProperty(path []byte) ([]byte, uint32) { return host().GetProperty(path) }

// SetProperty is proxy_set_property.
func SetProperty(path, val []byte) uint32 { return host().SetProperty(path, val) }

// GetHeaderMapPairs is proxy_get_header_map_pairs (a serialized map).
func GetHeaderMapPairs(mapType uint32) ([]byte, uint32) { return host().GetHeaderMapPairs(mapType) }

// SetHeaderMapPairs is proxy_set_header_map_pairs.
func SetHeaderMapPairs(mapType uint32, data []byte) uint32 {
	return host().SetHeaderMapPairs(mapType, data)
}

// GetHeaderMapValue is proxy_get_header_map_value.
func GetHeaderMapValue(mapType uint32, key string) ([]byte, uint32) {
	return host().GetHeaderMapValue(mapType, key)
}

// AddHeaderMapValue is proxy_add_header_map_value.
func AddHeaderMapValue(mapType uint32, key, value string) uint32 {
	return host().AddHeaderMapValue(mapType, key, value)
}

// ReplaceHeaderMapValue is proxy_replace_header_map_value.
func ReplaceHeaderMapValue(mapType uint32, key, value string) uint32 {
	return host().ReplaceHeaderMapValue(mapType, key, value)
}

// RemoveHeaderMapValue is proxy_remove_header_map_value.
func RemoveHeaderMapValue(mapType uint32, key string) uint32 {
	return host().RemoveHeaderMapValue(mapType, key)
}

// GetHeaderMapSize is proxy_get_header_map_size.
func GetHeaderMapSize(mapType uint32) (uint32, uint32) { return host().GetHeaderMapSize(mapType) }

// GetBufferBytes is proxy_get_buffer_bytes.
func GetBufferBytes(bufferType, start, maxSize uint32) ([]byte, uint32) {
	return host().GetBufferBytes(bufferType, start, maxSize)
}

// SetBufferBytes is proxy_set_buffer_bytes.
func SetBufferBytes(bufferType, start, size uint32, data []byte) uint32 {
	return host().SetBufferBytes(bufferType, start, size, data)
}

// ContinueStream is proxy_continue_stream.
func ContinueStream(streamType uint32) uint32 { return host().ContinueStream(streamType) }

// CloseStream is proxy_close_stream.
func CloseStream(streamType uint32) uint32 { return host().CloseStream(streamType) }

// SendLocalResponse is proxy_send_local_response; headers is a serialized map.
func SendLocalResponse(status uint32, details string, body, headers []byte, grpcStatus int32) uint32 {
	return host().SendLocalResponse(status, details, body, headers, grpcStatus)
}

// HTTPCall is proxy_http_call; headers and trailers are serialized maps.
func HTTPCall(cluster string, headers, body, trailers []byte, timeoutMS uint32) (uint32, uint32) {
	return host().HTTPCall(cluster, headers, body, trailers, timeoutMS)
}

// GetSharedData is proxy_get_shared_data.
func GetSharedData(key string) ([]byte, uint32, uint32) { return host().GetSharedData(key) }

// SetSharedData is proxy_set_shared_data.
func SetSharedData(key string, val []byte, cas uint32) uint32 {
	return host().SetSharedData(key, val, cas)
}

// RegisterSharedQueue is proxy_register_shared_queue.
func RegisterSharedQueue(name string) (uint32, uint32) { return host().RegisterSharedQueue(name) }

// ResolveSharedQueue is proxy_resolve_shared_queue.
func ResolveSharedQueue(vmID, name string) (uint32, uint32) {
	return host().ResolveSharedQueue(vmID, name)
}

// EnqueueSharedQueue is proxy_enqueue_shared_queue.
func EnqueueSharedQueue(id uint32, val []byte) uint32 { return host().EnqueueSharedQueue(id, val) }

// DequeueSharedQueue is proxy_dequeue_shared_queue.
func DequeueSharedQueue(id uint32) ([]byte, uint32) { return host().DequeueSharedQueue(id) }

// DefineMetric is proxy_define_metric.
func DefineMetric(metricType uint32, name string) (uint32, uint32) {
	return host().DefineMetric(metricType, name)
}

// IncrementMetric is proxy_increment_metric.
func IncrementMetric(id uint32, delta int64) uint32 { return host().IncrementMetric(id, delta) }

// RecordMetric is proxy_record_metric.
func RecordMetric(id uint32, value uint64) uint32 { return host().RecordMetric(id, value) }

// GetMetric is proxy_get_metric.
func GetMetric(id uint32) (uint64, uint32) { return host().GetMetric(id) }

// SetEffectiveContext is proxy_set_effective_context.
func SetEffectiveContext(contextID uint32) uint32 { return host().SetEffectiveContext(contextID) }

// Done is proxy_done.
func Done() uint32 { return host().Done() }

// CallForeignFunction is proxy_call_foreign_function.
func CallForeignFunction(name string, args []byte) ([]byte, uint32) {
	return host().CallForeignFunction(name, args)
}

// GRPCCall is proxy_grpc_call; md is a serialized map, msg a protobuf message.
func GRPCCall(cluster, service, method string, md, msg []byte, timeoutMS uint32) (uint32, uint32) {
	return host().GRPCCall(cluster, service, method, md, msg, timeoutMS)
}

// GRPCStream is proxy_grpc_stream.
func GRPCStream(cluster, service, method string, md []byte) (uint32, uint32) {
	return host().GRPCStream(cluster, service, method, md)
}

// GRPCSend is proxy_grpc_send.
func GRPCSend(token uint32, msg []byte, endStream bool) uint32 {
	return host().GRPCSend(token, msg, endStream)
}

// GRPCCancel is proxy_grpc_cancel.
func GRPCCancel(token uint32) uint32 { return host().GRPCCancel(token) }

// GRPCClose is proxy_grpc_close.
func GRPCClose(token uint32) uint32 { return host().GRPCClose(token) }

// GetStatus is proxy_get_status.
func GetStatus() (uint32, []byte, uint32) { return host().GetStatus() }
