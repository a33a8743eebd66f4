package wasm

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// Status codes the host returns to the guest.
const (
	statusOK                  = 0
	statusNotFound            = 1
	statusBadArgument         = 2
	statusSerializationFailed = 3
	statusParseFailure        = 4
	statusInvalidMemoryAccess = 6
	statusEmpty               = 7
	statusCasMismatch         = 8
	statusInternalFailure     = 10
	statusUnimplemented       = 12
)

// Actions a header/body callback returns.
const (
	actionContinue             = 0
	actionPause                = 1
	actionContinueAndEndStream = 2
	actionStopAllBuffer        = 3
	actionStopAllWatermark     = 4
)

// Map types.
const (
	mapRequestHeaders      = 0
	mapRequestTrailers     = 1
	mapResponseHeaders     = 2
	mapResponseTrailers    = 3
	mapGrpcInitialMeta     = 4
	mapGrpcTrailingMeta    = 5
	mapHTTPCallHeaders     = 6
	mapHTTPCallTrailers    = 7
	mapTypeCount           = 8
	bufferRequestBody      = 0
	bufferResponseBody     = 1
	bufferDownstreamData   = 2
	bufferUpstreamData     = 3
	bufferHTTPCallBody     = 4
	bufferGrpcReceive      = 5
	bufferVMConfiguration  = 6
	bufferPluginConfig     = 7
	bufferCallData         = 8
	streamTypeHTTPRequest  = 0
	streamTypeHTTPResponse = 1
)

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// abiFunc is one host function of module env.
type abiFunc struct {
	name   string
	fn     api.GoModuleFunc
	params []api.ValueType
}

// registerABI exports every host function into b. Each returns an i32
// status.
func registerABI(b wazero.HostModuleBuilder) {
	var all []abiFunc
	all = append(all, logFuncs()...)
	all = append(all, propertyFuncs()...)
	all = append(all, headerFuncs()...)
	all = append(all, bufferFuncs()...)
	all = append(all, streamFuncs()...)
	all = append(all, httpCallFuncs()...)
	all = append(all, sharedFuncs()...)
	all = append(all, metricFuncs()...)
	all = append(all, grpcFuncs()...)
	for _, f := range all {
		b.NewFunctionBuilder().
			WithGoModuleFunction(f.fn, f.params, []api.ValueType{i32}).
			WithParameterNames().
			Export(f.name)
	}
	// AssemblyScript's default abort(message, file, line, column): the guest
	// gave up; trap so the VM is replaced.
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
		if v := vmFrom(ctx); v != nil {
			v.p.log.Warn("wasm guest called abort", zapLine(uint32(stack[2])))
		}
		panic(errGuestAbort)
	}), []api.ValueType{i32, i32, i32, i32}, nil).Export("abort")
}

// vmKey is the context key under which a VM's context carries the VM.
type vmKey struct{}

// vmFrom returns the VM a host call is made from.
func vmFrom(ctx context.Context) *vm {
	if c, ok := ctx.(*vmContext); ok {
		return c.v
	}
	v, _ := ctx.Value(vmKey{}).(*vm)
	return v
}

// vmContext is the context of a VM's calls into its guest, a field of the
// VM: a call reads it beside its stack, where a context.WithValue would be
// one more allocation to read (wazero looks a key up in it at every call),
// and a host function finds its VM without a lookup. It is never done and
// has no deadline: the watchdog stops a call that overruns (deadline.go).
type vmContext struct{ v *vm }

func (*vmContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*vmContext) Done() <-chan struct{}       { return nil }
func (*vmContext) Err() error                  { return nil }

// Value is the VM for vmKey, nil for any other key.
func (c *vmContext) Value(key any) any {
	if _, ok := key.(vmKey); ok {
		return c.v
	}
	return nil
}

// host wraps a host function body: it finds the VM and stores the status,
// or traps the guest's call when the body raised v.trap.
func host(f func(v *vm, stack []uint64) uint32) api.GoModuleFunc {
	return func(ctx context.Context, _ api.Module, stack []uint64) {
		v := vmFrom(ctx)
		if v == nil {
			stack[0] = statusInternalFailure
			return
		}
		if v.bodyNext && !v.stopped {
			// A headers callback that calls the host may have changed
			// what its body callback would see or whether it is made:
			// that one is made on its own (streamFilter.OnResponse).
			v.stop.Set(1)
			v.stopped = true
		}
		stack[0] = uint64(f(v, stack))
		if err := v.trap; err != nil {
			v.trap = nil
			panic(err)
		}
	}
}

// params returns n i32 parameter types.
func params(n int) []api.ValueType {
	p := make([]api.ValueType, n)
	for i := range p {
		p[i] = i32
	}
	return p
}

// read returns a view of guest memory [ptr, ptr+n). The view is valid until
// the guest runs again.
func (v *vm) read(ptr, n uint32) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	return v.mem.Read(ptr, n)
}

// writeU32 stores a little-endian u32 at ptr.
func (v *vm) writeU32(ptr, x uint32) bool { return v.mem.WriteUint32Le(ptr, x) }

// writeU64 stores a little-endian u64 at ptr.
func (v *vm) writeU64(ptr uint32, x uint64) bool { return v.mem.WriteUint64Le(ptr, x) }

// writable reports whether [ptr, ptr+n) lies in guest memory.
func (v *vm) writable(ptr, n uint32) bool {
	end := uint64(ptr) + uint64(n)
	return end <= uint64(v.mem.Size())
}

// copyOut hands data to the guest the Proxy-Wasm way: allocate with the
// guest's allocator, copy, and store the pointer and size at retPtr and
// retLen. Empty data stores a null pointer and size 0.
func (v *vm) copyOut(data []byte, retPtr, retLen uint32) uint32 {
	if !v.writable(retPtr, 4) || !v.writable(retLen, 4) {
		return statusInvalidMemoryAccess
	}
	if len(data) == 0 {
		v.writeU32(retPtr, 0)
		v.writeU32(retLen, 0)
		return statusOK
	}
	ptr, ok := v.alloc(uint32(len(data)))
	if !ok {
		return statusInternalFailure
	}
	if !v.mem.Write(ptr, data) {
		return statusInvalidMemoryAccess
	}
	v.writeU32(retPtr, ptr)
	v.writeU32(retLen, uint32(len(data)))
	return statusOK
}

// serializeMap appends the Proxy-Wasm serialization of pairs to dst:
// u32 count, count×(u32 klen, u32 vlen), then each key NUL value NUL.
func serializeMap(dst []byte, pairs [][2][]byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(pairs)))
	for _, p := range pairs {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p[0])))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p[1])))
	}
	for _, p := range pairs {
		dst = append(dst, p[0]...)
		dst = append(dst, 0)
		dst = append(dst, p[1]...)
		dst = append(dst, 0)
	}
	return dst
}

// parseMap decodes a serialized map into dst (views into b). ok is false
// when b is malformed.
func parseMap(dst [][2][]byte, b []byte) ([][2][]byte, bool) {
	if len(b) == 0 {
		return dst, true
	}
	if len(b) < 4 {
		return dst, false
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	if n > uint64(len(b)-4)/8 {
		return dst, false
	}
	sizes := b[4 : 4+n*8]
	data := b[4+n*8:]
	for i := uint64(0); i < n; i++ {
		kl := uint64(binary.LittleEndian.Uint32(sizes[i*8:]))
		vl := uint64(binary.LittleEndian.Uint32(sizes[i*8+4:]))
		if kl+1+vl+1 > uint64(len(data)) {
			return dst, false
		}
		k := data[:kl]
		val := data[kl+1 : kl+1+vl]
		dst = append(dst, [2][]byte{k, val})
		data = data[kl+1+vl+1:]
	}
	return dst, true
}
