// Command grpcwatch is a test guest for streams (HTTP/2, gRPC), written
// with the public Proxy-Wasm Go SDK: it counts the request and response
// body chunks it is shown and whether the request's last one said
// end_of_stream, and reports them in a response trailer beside the
// grpc-status it read there. With request header x-deny-body it refuses
// the first body chunk with a local 403. In the request's trailers it
// adds x-wasm-trailer: what it read of x-checksum there, and whether the
// body's last chunk said end_of_stream (it must not: the trailers end the
// stream); with x-deny-trailers there, it answers a local 403.
package main

import (
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct {
	types.DefaultHttpContext
	deny                 bool
	reqChunks, reqBytes  int
	reqEOS, reqHeaderEOS bool
	respChunks           int
}

func (s *stream) OnHttpRequestHeaders(_ int, endOfStream bool) types.Action {
	v, _ := proxywasm.GetHttpRequestHeader("x-deny-body")
	s.deny = v != ""
	s.reqHeaderEOS = endOfStream
	return types.ActionContinue
}

func (s *stream) OnHttpRequestBody(bodySize int, endOfStream bool) types.Action {
	s.reqChunks++
	s.reqBytes += bodySize
	s.reqEOS = s.reqEOS || endOfStream
	if s.deny && bodySize > 0 {
		if err := proxywasm.SendHttpResponse(403, nil, []byte("body refused by wasm"), -1); err != nil {
			panic(err)
		}
		return types.ActionPause
	}
	return types.ActionContinue
}

func (s *stream) OnHttpRequestTrailers(int) types.Action {
	if _, err := proxywasm.GetHttpRequestTrailer("x-deny-trailers"); err == nil {
		if err := proxywasm.SendHttpResponse(403, nil, []byte("trailers refused by wasm"), -1); err != nil {
			panic(err)
		}
		return types.ActionPause
	}
	sum, err := proxywasm.GetHttpRequestTrailer("x-checksum")
	if err != nil {
		sum = "none"
	}
	seen := "checksum=" + sum + " body_eos=" + strconv.FormatBool(s.reqEOS)
	if err := proxywasm.AddHttpRequestTrailer("x-wasm-trailer", seen); err != nil {
		panic(err)
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseBody(int, bool) types.Action {
	s.respChunks++
	return types.ActionContinue
}

func (s *stream) OnHttpResponseTrailers(int) types.Action {
	st, err := proxywasm.GetHttpResponseTrailer("grpc-status")
	if err != nil {
		st = "none"
	}
	seen := "req_chunks=" + strconv.Itoa(s.reqChunks) + " req_bytes=" + strconv.Itoa(s.reqBytes) +
		" req_eos=" + strconv.FormatBool(s.reqEOS) + " header_eos=" + strconv.FormatBool(s.reqHeaderEOS) +
		" resp_chunks=" + strconv.Itoa(s.respChunks) + " grpc_status=" + st
	if err := proxywasm.AddHttpResponseTrailer("x-wasm-seen", seen); err != nil {
		panic(err)
	}
	return types.ActionContinue
}
