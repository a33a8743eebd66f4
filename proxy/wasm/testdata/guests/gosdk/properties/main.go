// Command properties is a conformance guest: it reads host properties
// (Envoy attribute names) and echoes each into a header named
// x-prop-<path with dots as dashes>: request-phase properties go upstream in
// request headers, response-phase ones to the client in response headers.
// A property the host does not know is echoed as "ERR:<status>", so a test
// failure names the missing property.
package main

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type kind int

const (
	str kind = iota
	i64
	boolean
)

type prop struct {
	path string // dotted
	kind kind
}

var requestProps = []prop{
	{"request.path", str},
	{"request.url_path", str},
	{"request.host", str},
	{"request.scheme", str},
	{"request.method", str},
	{"request.id", str},
	{"request.protocol", str},
	{"request.time", i64},
	{"source.address", str},
	{"source.port", i64},
	{"destination.address", str},
	{"destination.port", i64},
	{"connection.id", i64},
	{"connection.mtls", boolean},
	{"plugin_name", str},
	{"plugin_root_id", str},
	{"plugin_vm_id", str},
	{"node.id", str},
	{"node.metadata.REGION", str},
	{"listener_direction", i64}, // Envoy: TrafficDirection enum, OUTBOUND = 2
}

var responseProps = []prop{
	{"response.code", i64},
	{"cluster_name", str},
	{"route_name", str},
	{"upstream.address", str},
	{"weft.note", str}, // written by this guest with proxy_set_property on the request path
}

type stream struct {
	types.DefaultHttpContext
}

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	for _, p := range requestProps {
		must(proxywasm.AddHttpRequestHeader(headerName(p.path), read(p)))
	}
	// A map property: the request headers as a serialized map.
	tag := "ERR:not-in-map"
	if hs, err := proxywasm.GetPropertyMap([]string{"request", "headers"}); err != nil {
		tag = "ERR:" + err.Error()
	} else {
		for _, h := range hs {
			if h[0] == "x-client-tag" {
				tag = h[1]
			}
		}
	}
	must(proxywasm.AddHttpRequestHeader("x-prop-request-headers-x-client-tag", tag))

	unknown := "found"
	if _, err := proxywasm.GetProperty([]string{"no_such", "property"}); errors.Is(err, types.ErrorStatusNotFound) {
		unknown = "notfound"
	} else if err != nil {
		unknown = "ERR:" + err.Error()
	}
	must(proxywasm.AddHttpRequestHeader("x-prop-unknown", unknown))

	if err := proxywasm.SetProperty([]string{"weft", "note"}, []byte("set-by-guest")); err != nil {
		must(proxywasm.AddHttpRequestHeader("x-set-property-error", err.Error()))
	}
	return types.ActionContinue
}

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	for _, p := range responseProps {
		must(proxywasm.AddHttpResponseHeader(headerName(p.path), read(p)))
	}
	return types.ActionContinue
}

func read(p prop) string {
	v, err := proxywasm.GetProperty(strings.Split(p.path, "."))
	if err != nil {
		return "ERR:" + err.Error()
	}
	switch p.kind {
	case i64:
		if len(v) != 8 {
			return "ERR:want 8 bytes, got " + strconv.Itoa(len(v))
		}
		return strconv.FormatInt(int64(binary.LittleEndian.Uint64(v)), 10)
	case boolean:
		if len(v) != 1 {
			return "ERR:want 1 byte, got " + strconv.Itoa(len(v))
		}
		return strconv.FormatBool(v[0] != 0)
	}
	return string(v)
}

func headerName(path string) string {
	return "x-prop-" + strings.ReplaceAll(strings.ReplaceAll(path, ".", "-"), "_", "-")
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
