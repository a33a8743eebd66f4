// Command httpcall is a conformance guest: on request headers it asks the
// "auth" cluster (or the one named by x-auth-cluster) about the x-user
// header, pauses, and on the call's response either resumes the request with
// the headers the auth service returned or answers locally. With
// x-empty-authority the call's :authority is empty.
package main

import (
	"errors"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetHttpContext(func(uint32) types.HttpContext { return &stream{} })
}

type stream struct {
	types.DefaultHttpContext
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	user, err := proxywasm.GetHttpRequestHeader("x-user")
	if err != nil && !errors.Is(err, types.ErrorStatusNotFound) {
		panic(err)
	}
	cluster, err := proxywasm.GetHttpRequestHeader("x-auth-cluster")
	if errors.Is(err, types.ErrorStatusNotFound) {
		cluster = "auth"
	} else if err != nil {
		panic(err)
	}
	authority := "auth.internal"
	if _, err := proxywasm.GetHttpRequestHeader("x-empty-authority"); err == nil {
		authority = "" // as the SDK's multiple_dispatches example sends it
	}
	headers := [][2]string{
		{":method", "POST"},
		{":path", "/check?user=" + user},
		{":authority", authority},
		{"x-call-origin", "httpcall-guest"},
	}
	_, err = proxywasm.DispatchHttpCall(cluster, headers, []byte("who="+user), nil, 5000, s.onAuthResponse)
	if err != nil {
		must(proxywasm.SendHttpResponse(500, [][2]string{{"x-dispatch-error", err.Error()}}, []byte("dispatch failed"), -1))
	}
	return types.ActionPause
}

func (s *stream) onAuthResponse(numHeaders, bodySize, _ int) {
	if numHeaders == 0 {
		// The host could not get a response (connection refused, timeout,
		// unknown cluster): fail closed with our own answer, and the reason
		// when the host gives one (weft's and Kong's :dispatch_status).
		hs, _ := proxywasm.GetHttpCallResponseHeaders()
		must(proxywasm.SendHttpResponse(503, [][2]string{
			{"x-auth-failure", "no-response"},
			{"x-dispatch-status", lookup(hs, ":dispatch_status")},
		}, []byte("auth unavailable"), -1))
		return
	}
	headers, err := proxywasm.GetHttpCallResponseHeaders()
	must(err)
	status := lookup(headers, ":status")
	var body []byte
	if bodySize > 0 {
		body, err = proxywasm.GetHttpCallResponseBody(0, bodySize)
		must(err)
	}
	if status != "200" {
		must(proxywasm.SendHttpResponse(401, [][2]string{
			{"x-auth-status", status},
		}, append([]byte("denied by auth: "), body...), -1))
		return
	}
	must(proxywasm.AddHttpRequestHeader("x-auth-identity", lookup(headers, "x-auth-identity")))
	must(proxywasm.AddHttpRequestHeader("x-auth-body", string(body)))
	must(proxywasm.ResumeHttpRequest())
}

func lookup(headers [][2]string, name string) string {
	for _, h := range headers {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
