package wasm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Metadata properties: listener_metadata, route_metadata and
// cluster_metadata (also under xds.), walked segment by segment (namespace
// names hold dots: envoy.filters.http.wasm), in Envoy's encodings: a string
// raw, a number as an 8-byte little-endian double (Struct numbers are
// doubles), a bool as one byte, a map as a Proxy-Wasm map (string values
// raw, others as JSON), a list as JSON. The whole metadata (no
// filter_metadata segment) is JSON where Envoy gives the serialized proto.

// metadataProperty answers path when it names metadata; handled is false
// for any other path.
func (v *vm) metadataProperty(path, dst []byte) (out []byte, found, handled bool) {
	if !bytes.Contains(path[:min(len(path), 32)], []byte("_metadata")) {
		return dst, false, false // the common case: no split, no allocation
	}
	segs := bytes.Split(bytes.TrimRight(path, "\x00"), []byte{0})
	if len(segs) > 1 && string(segs[0]) == "xds" {
		segs = segs[1:]
	}
	var which int
	switch string(segs[0]) {
	case "listener_metadata":
		which = 0
	case "route_metadata":
		which = 1
	case "cluster_metadata":
		which = 2
	case "upstream_host_metadata":
		which = 3
	default:
		return dst, false, false
	}
	f := v.cur
	if f == nil {
		return dst, false, true
	}
	var md map[string]map[string]any
	switch which {
	case 0:
		md = f.s.ListenerMetadata
	case 1:
		md = f.s.RouteMetadata
	case 2:
		md = f.s.ClusterMetadata
	default: // the endpoint the request went to, once there is one
		md = f.s.HostMetadata[f.s.UpstreamAddr]
	}
	if md == nil {
		return dst, false, true
	}
	rest := segs[1:]
	if len(rest) == 0 {
		b, err := json.Marshal(map[string]any{"filter_metadata": md})
		return append(dst, b...), err == nil, true
	}
	if string(rest[0]) != "filter_metadata" {
		return dst, false, true
	}
	var cur any = md
	for _, seg := range rest[1:] {
		next, ok := metadataChild(cur, string(seg))
		if !ok {
			return dst, false, true
		}
		cur = next
	}
	out, ok := appendMetadataValue(dst, cur)
	return out, ok, true
}

// metadataChild is the value under key in a metadata map or list.
func metadataChild(cur any, key string) (any, bool) {
	switch m := cur.(type) {
	case map[string]map[string]any:
		x, ok := m[key]
		return x, ok
	case map[string]any:
		x, ok := m[key]
		return x, ok
	case []any:
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i >= len(m) {
			return nil, false
		}
		return m[i], true
	}
	return nil, false
}

// appendMetadataValue encodes val the way Envoy serializes a property.
func appendMetadataValue(dst []byte, val any) ([]byte, bool) {
	switch x := val.(type) {
	case string:
		return append(dst, x...), true
	case bool:
		if x {
			return append(dst, 1), true
		}
		return append(dst, 0), true
	case int:
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(float64(x))), true
	case int64:
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(float64(x))), true
	case uint64:
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(float64(x))), true
	case float64:
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(x)), true
	case map[string]map[string]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[k] = v
		}
		return appendMetadataValue(dst, m)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		pairs := make([][2][]byte, 0, len(keys))
		for _, k := range keys {
			var v []byte
			if s, ok := x[k].(string); ok {
				v = []byte(s)
			} else if b, err := json.Marshal(x[k]); err == nil {
				v = b
			} else {
				return dst, false
			}
			pairs = append(pairs, [2][]byte{[]byte(k), v})
		}
		return serializeMap(dst, pairs), true
	case []any:
		b, err := json.Marshal(x)
		return append(dst, b...), err == nil
	}
	return append(dst, fmt.Sprint(val)...), true
}
