package sdk

import (
	"encoding/binary"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// propertyPath joins path segments with NUL bytes, the ABI's encoding.
func propertyPath(path []string) []byte {
	n := 0
	for _, p := range path {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
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
