package conformance_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/weftmesh/weft/proxy/wasm"
)

// TestBody: the guest replaces the buffered request body (the upstream gets
// the new body with a matching Content-Length) and rewrites the response
// body with replace, prepend and append (the client gets the result).
func TestBody(t *testing.T) {
	t.Parallel()
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Module: goGuest(t, "body")}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	t.Run("request and response bodies", func(t *testing.T) {
		const sent = "hello, wasm body"
		res := px.mustDo(t, request{Method: "POST", Path: "/echo", Body: sent, Header: [][2]string{{"Content-Type", "text/plain"}}})
		if res.Status != 200 {
			t.Fatalf("status %d, body %q", res.Status, res.Body)
		}
		u := res.Upstream
		if u == nil {
			t.Fatal("the upstream never saw the request")
		}
		want := strings.ToUpper(sent) + " (rewritten by wasm)"
		if u.Body != want {
			t.Errorf("upstream body %q, want %q", u.Body, want)
		}
		if u.ContentLength != len(want) {
			t.Errorf("upstream Content-Length %d, want %d (the new body's length)", u.ContentLength, len(want))
		}
		if got := u.Get("x-original-body-size"); got != strconv.Itoa(len(sent)) {
			t.Errorf("guest saw body_size %q, want %d", got, len(sent))
		}
		wantResp := "<<hello from UPSTREAM at /echo>>"
		if res.Body != wantResp {
			t.Errorf("client body %q, want %q", res.Body, wantResp)
		}
		if cl := res.Get("content-length"); cl != strconv.Itoa(len(wantResp)) {
			t.Errorf("client Content-Length %q, want %d", cl, len(wantResp))
		}
		if !contains(res.Trace.Called, "OnRequestBody") || !contains(res.Trace.Called, "OnResponseBody") {
			t.Errorf("body callbacks not run: %v", res.Trace.Called)
		}
	})

	t.Run("larger body", func(t *testing.T) {
		sent := strings.Repeat("abcdefghij", 10_000) // 100 KB
		res := px.mustDo(t, request{Method: "POST", Path: "/big", Body: sent})
		if res.Status != 200 || res.Upstream == nil {
			t.Fatalf("status %d, upstream saw it: %v", res.Status, res.Upstream != nil)
		}
		want := strings.ToUpper(sent) + " (rewritten by wasm)"
		if res.Upstream.Body != want {
			t.Errorf("upstream body: %d bytes, want %d (prefix %q)", len(res.Upstream.Body), len(want), prefix(res.Upstream.Body, 32))
		}
		if res.Upstream.ContentLength != len(want) {
			t.Errorf("upstream Content-Length %d, want %d", res.Upstream.ContentLength, len(want))
		}
	})

	t.Run("no body skips the request body callback", func(t *testing.T) {
		res := px.mustDo(t, request{Path: "/nobody"})
		if res.Status != 200 || res.Upstream == nil {
			t.Fatalf("status %d", res.Status)
		}
		if res.Upstream.Body != "" || res.Upstream.Has("x-original-body-size") {
			t.Errorf("upstream got body %q / x-original-body-size %q for a bodiless request", res.Upstream.Body, res.Upstream.Get("x-original-body-size"))
		}
		if res.Body != "<<hello from UPSTREAM at /nobody>>" {
			t.Errorf("client body %q", res.Body)
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
