package sdk

import (
	"encoding/binary"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// pathBuf is reused for the paths passed to the host: the guest runs one
// callback at a time and the host does not keep them.
var pathBuf []byte

// propertyPath joins path segments with NUL bytes, the ABI's encoding, in
// pathBuf (valid until the next call).
func propertyPath(path []string) []byte {
	pathBuf = appendPropertyPath(pathBuf[:0], path)
	return pathBuf
}

func appendPropertyPath(b []byte, path []string) []byte {
	for i, p := range path {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// Property reads a host property of the current context, e.g.
// Property("request", "path") or Property("plugin_name"). Values are raw
// bytes; integers are 8-byte little-endian (PropertyInt64).
func Property(path ...string) ([]byte, error) {
	b, st := abi.GetProperty(propertyPath(path))
	return b, statusErr(st)
}

// PropertyString reads a string property.
func PropertyString(path ...string) (string, error) {
	b, err := Property(path...)
	return abi.String(b), err
}

// PropertyInt64 reads an integer (or duration, or timestamp) property.
func PropertyInt64(path ...string) (int64, error) {
	b, err := Property(path...)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, StatusSerializationFailure
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

// SetProperty stores a property on the current context.
func SetProperty(value []byte, path ...string) error {
	return statusErr(abi.SetProperty(propertyPath(path), value))
}

// foreignGetProperties is Weft's foreign function reading several
// properties in one host call (docs/wasm.md).
const foreignGetProperties = "weft.get_properties"

// noBatchPropertiesHost is set once the host answered that it has no
// weft.get_properties: queries read one property at a time.
var noBatchPropertiesHost bool

// PropertyQuery is a fixed list of properties read together, e.g. what a
// telemetry filter records in OnLog. Build it once (NewPropertyQuery) and
// Read it per stream: on Weft the values come back from one host call in
// one buffer (weft.get_properties) instead of one call and one allocation
// each; on other hosts (Envoy) Read asks for them one by one.
type PropertyQuery struct {
	paths [][]byte // encoded paths
	args  []byte   // weft.get_properties arguments
}

// NewPropertyQuery returns a query for paths, each a property path as
// Property takes it, e.g. []string{"response", "code"}.
func NewPropertyQuery(paths ...[]string) *PropertyQuery {
	q := &PropertyQuery{paths: make([][]byte, len(paths))}
	q.args = binary.LittleEndian.AppendUint32(nil, uint32(len(paths)))
	for i, p := range paths {
		q.paths[i] = appendPropertyPath(nil, p)
		q.args = binary.LittleEndian.AppendUint32(q.args, uint32(len(q.paths[i])))
		q.args = append(q.args, q.paths[i]...)
	}
	return q
}

// Len is the number of properties in q.
func (q *PropertyQuery) Len() int { return len(q.paths) }

// Read reads q's properties of the current context into vals, which must
// have q.Len() elements: vals[i] is property i's value, nil when the host
// does not have it (not an error). The values may share one buffer, owned
// by the caller.
func (q *PropertyQuery) Read(vals [][]byte) error {
	if len(vals) != len(q.paths) {
		return StatusBadArgument
	}
	if !noBatchPropertiesHost {
		out, st := abi.CallForeignFunction(foreignGetProperties, q.args)
		switch Status(st) {
		case StatusOK:
			if splitProperties(out, vals) {
				return nil
			}
			return StatusSerializationFailure
		case StatusNotFound, StatusUnimplemented:
			noBatchPropertiesHost = true
		default:
			return statusErr(st)
		}
	}
	for i, p := range q.paths {
		b, st := abi.GetProperty(p)
		switch Status(st) {
		case StatusOK:
			if b == nil {
				b = []byte{}
			}
			vals[i] = b
		case StatusNotFound:
			vals[i] = nil
		default:
			return statusErr(st)
		}
	}
	return nil
}

// splitProperties decodes weft.get_properties' result into vals.
func splitProperties(b []byte, vals [][]byte) bool {
	for i := range vals {
		if len(b) < 4 {
			return false
		}
		n := binary.LittleEndian.Uint32(b)
		b = b[4:]
		if n == 0xFFFFFFFF {
			vals[i] = nil
			continue
		}
		if uint64(n) > uint64(len(b)) {
			return false
		}
		vals[i] = b[:n:n]
		b = b[n:]
	}
	return len(b) == 0
}
