package wasm

// Foreign functions: proxy_call_foreign_function(name, name_len, args,
// args_len, ret_ptr_ptr, ret_len_ptr) calls a host function by name, the
// way Envoy offers its own (verify_signature, compress, ...). Weft's are
// Weft extensions, named "weft.*"; a name the host does not know answers
// NotFound (1), as Envoy does, so a guest can probe and fall back.

// foreignFunc is one named host function. args is a view of guest memory,
// valid for the call only; the result is copied to the guest before the
// guest runs again, so it may point into reused or static memory. A status
// other than OK returns no data.
type foreignFunc func(v *vm, args []byte) ([]byte, uint32)

// foreignRegistry is the set of foreign functions of one wazero runtime,
// with the state they share across VMs (the parsed-key cache).
type foreignRegistry struct {
	funcs map[string]foreignFunc
	keys  *keyCache
}

// maxForeignKeys bounds the parsed keys weft.verify_signature keeps.
const maxForeignKeys = 1024

// newForeignRegistry returns the registry every VM of a runtime shares. The
// map is never written after this, so lookups need no lock.
func newForeignRegistry() *foreignRegistry {
	r := &foreignRegistry{keys: newKeyCache(maxForeignKeys)}
	r.funcs = map[string]foreignFunc{
		foreignVerifySignature: r.verifySignature,
		foreignJWSKeys:         r.jwsKeys,
		foreignJWSVerify:       r.jwsVerify,
		foreignEditHeaders:     foreignEditHeadersFunc,
		"compress":             foreignCompress, // Envoy's (abi_foreign_zlib.go)
		"uncompress":           foreignUncompress,
		"declare_property":     foreignDeclareProperty, // Envoy's (abi_foreign_property.go)
		foreignStreamCallbacks: foreignSetStreamCallbacks,
		foreignGetProperties:   foreignGetPropertiesFunc,
		foreignRecordMetrics:   foreignRecordMetricsFunc,
	}
	return r
}

// call is proxy_call_foreign_function.
func (r *foreignRegistry) call(v *vm, st []uint64) uint32 {
	name, ok1 := v.read(uint32(st[0]), uint32(st[1]))
	args, ok2 := v.read(uint32(st[2]), uint32(st[3]))
	retPtr, retLen := uint32(st[4]), uint32(st[5])
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	f := r.funcs[string(name)] // no allocation: the compiler keeps the view
	if f == nil {
		return statusNotFound
	}
	if !v.writable(retPtr, 4) || !v.writable(retLen, 4) {
		return statusInvalidMemoryAccess
	}
	out, s := f(v, args)
	if s != statusOK {
		return s
	}
	return v.copyOut(out, retPtr, retLen)
}
