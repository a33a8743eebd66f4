package wasm

// bufferFuncs: proxy_get_buffer_bytes, proxy_set_buffer_bytes,
// proxy_get_buffer_status (0.1.0) and proxy_get_configuration (0.1.0).
func bufferFuncs() []abiFunc {
	return []abiFunc{
		{"proxy_get_buffer_bytes", host(proxyGetBufferBytes), params(5)},
		{"proxy_set_buffer_bytes", host(proxySetBufferBytes), params(5)},
		{"proxy_get_buffer_status", host(proxyGetBufferStatus), params(3)},
		{"proxy_get_configuration", host(proxyGetConfiguration), params(2)},
	}
}

// buffer returns the bytes of a buffer type in the current context; ok is
// false when the buffer does not exist here.
func (v *vm) buffer(bt uint32) ([]byte, bool) {
	f := v.cur
	switch bt {
	case bufferRequestBody:
		if f == nil {
			return nil, false
		}
		return f.s.Request.Body(), true
	case bufferResponseBody:
		if f == nil || f.phase != phaseResponse {
			return nil, false
		}
		return f.s.Response.Body(), true
	case bufferHTTPCallBody:
		if v.callResp == nil {
			return nil, false
		}
		return v.callResp.Body(), true
	case bufferGrpcReceive:
		if v.grpc == nil || v.grpc.recv == nil {
			return nil, false
		}
		return v.grpc.recv, true
	case bufferDownstreamData, bufferUpstreamData:
		if f == nil || f.net == nil {
			return nil, false
		}
		return f.net.data[bt-bufferDownstreamData], true
	case bufferVMConfiguration:
		return v.p.spec.VMConfig, true
	case bufferPluginConfig:
		return v.p.spec.PluginConfig, true
	}
	return nil, false
}

// proxy_get_buffer_bytes(type, start, max_len, ret_ptr_ptr, ret_len_ptr)
func proxyGetBufferBytes(v *vm, st []uint64) uint32 {
	b, ok := v.buffer(uint32(st[0]))
	if !ok {
		return statusNotFound
	}
	start, n := uint64(uint32(st[1])), uint64(uint32(st[2]))
	if start > uint64(len(b)) {
		return statusBadArgument
	}
	end := min(start+n, uint64(len(b)))
	if end == start {
		return statusNotFound
	}
	return v.copyOut(b[start:end], uint32(st[3]), uint32(st[4]))
}

// proxy_set_buffer_bytes(type, start, len, data_ptr, data_len) replaces
// [start, start+len) (clamped to the buffer): start=0,len=0 prepends,
// start≥size appends, 0,≥size replaces all — what the SDKs emit.
func proxySetBufferBytes(v *vm, st []uint64) uint32 {
	bt := uint32(st[0])
	data, ok := v.read(uint32(st[3]), uint32(st[4]))
	if !ok {
		return statusInvalidMemoryAccess
	}
	f := v.cur
	if f == nil {
		return statusNotFound
	}
	var cur []byte
	switch bt {
	case bufferRequestBody:
		cur = f.s.Request.Body()
	case bufferResponseBody:
		if f.phase != phaseResponse {
			return statusNotFound
		}
		cur = f.s.Response.Body()
	case bufferDownstreamData, bufferUpstreamData:
		if f.net == nil {
			return statusNotFound
		}
		cur = f.net.data[bt-bufferDownstreamData]
	default:
		return statusBadArgument
	}
	size := uint64(len(cur))
	start := min(uint64(uint32(st[1])), size)
	end := min(start+uint64(uint32(st[2])), size)
	if !v.admitBody(f.s, int(size-(end-start))+len(data)) {
		return statusBadArgument
	}
	nb := make([]byte, 0, size-(end-start)+uint64(len(data)))
	nb = append(nb, cur[:start]...)
	nb = append(nb, data...)
	nb = append(nb, cur[end:]...)
	switch bt {
	case bufferDownstreamData, bufferUpstreamData:
		f.net.data[bt-bufferDownstreamData] = nb
	case bufferRequestBody:
		f.s.Request.SetBodyRaw(nb)
	default:
		f.s.Response.SetBodyRaw(nb)
	}
	return statusOK
}

// proxy_get_buffer_status(type, length_ptr, flags_ptr) (0.1.0)
func proxyGetBufferStatus(v *vm, st []uint64) uint32 {
	b, ok := v.buffer(uint32(st[0]))
	if !ok {
		return statusNotFound
	}
	if !v.writeU32(uint32(st[1]), uint32(len(b))) || !v.writeU32(uint32(st[2]), 0) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}

// proxy_get_configuration(ret_ptr_ptr, ret_len_ptr) (0.1.0): the plugin
// configuration.
func proxyGetConfiguration(v *vm, st []uint64) uint32 {
	return v.copyOut(v.p.spec.PluginConfig, uint32(st[0]), uint32(st[1]))
}
