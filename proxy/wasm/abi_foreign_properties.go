package wasm

import "encoding/binary"

// weft.get_properties reads several properties of the current context in
// one call: a guest that reads five properties per stream (a telemetry
// filter's on_log) pays one entry into the host and one buffer from its
// allocator instead of five of each.
//
// Arguments (integers little-endian): u32 count, then count times u32 len
// and a property path encoded as for proxy_get_property (segments
// separated by NUL bytes). The result is, for each path in order, u32 len
// and the value as proxy_get_property returns it, or u32 0xFFFFFFFF and
// nothing for a property that is not found. Malformed arguments, or more
// than maxBatchProperties paths, answer BadArgument.
const foreignGetProperties = "weft.get_properties"

// maxBatchProperties bounds the paths of one weft.get_properties call.
const maxBatchProperties = 64

// propertyMissing is a not-found entry's length in the result.
const propertyMissing = 0xFFFFFFFF

// foreignGetPropertiesFunc is weft.get_properties.
func foreignGetPropertiesFunc(v *vm, args []byte) ([]byte, uint32) {
	if len(args) < 4 {
		return nil, statusBadArgument
	}
	n := binary.LittleEndian.Uint32(args)
	if n > maxBatchProperties {
		return nil, statusBadArgument
	}
	rest := args[4:]
	out := v.batchBuf[:0]
	for range n {
		if len(rest) < 4 {
			return nil, statusBadArgument
		}
		l := binary.LittleEndian.Uint32(rest)
		if uint64(l) > uint64(len(rest)-4) {
			return nil, statusBadArgument
		}
		path := rest[4 : 4+l]
		rest = rest[4+l:]
		at := len(out)
		out = append(out, 0, 0, 0, 0)
		val, found := v.batchProperty(path, out)
		if !found {
			out = val[:at+4]
			binary.LittleEndian.PutUint32(out[at:], propertyMissing)
			continue
		}
		out = val
		binary.LittleEndian.PutUint32(out[at:], uint32(len(out)-at-4))
	}
	if len(rest) != 0 {
		return nil, statusBadArgument
	}
	v.batchBuf = out[:0]
	return out, statusOK
}

// batchProperty appends the value of the property at the NUL-separated
// path to dst, as proxy_get_property finds it.
func (v *vm) batchProperty(path, dst []byte) ([]byte, bool) {
	if val, found, handled := v.metadataProperty(path, dst); handled {
		return val, found
	}
	return v.property(v.propertyKey(path), dst)
}
