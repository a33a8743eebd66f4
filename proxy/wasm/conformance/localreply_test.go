package conformance_test

import (
	"testing"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/wasm"
)

// TestLocalResponse: without x-api-key the guest answers 403 itself (body
// and headers it chose); the upstream never sees the request. Response
// filters still run on the local reply (Envoy behaviour). With the key the
// request goes through.
func TestLocalResponse(t *testing.T) {
	t.Parallel()
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Module: goGuest(t, "localreply")}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	denied := px.mustDo(t, request{Path: "/secret"})
	if denied.Status != 403 {
		t.Errorf("status %d, want 403", denied.Status)
	}
	if denied.Body != "forbidden: missing x-api-key" {
		t.Errorf("body %q", denied.Body)
	}
	if got := denied.Get("x-denied-by"); got != "localreply-guest" {
		t.Errorf("x-denied-by %q, want localreply-guest", got)
	}
	if got := denied.Get("content-type"); got != "text/plain" {
		t.Errorf("content-type %q, want text/plain", got)
	}
	if denied.Upstream != nil || denied.Trace.Forwarded {
		t.Error("the upstream saw a request the guest answered locally")
	}
	if denied.Trace.RequestHeaders != filter.LocalReply {
		t.Errorf("OnRequestHeaders returned %v, want LocalReply", denied.Trace.RequestHeaders)
	}
	if got := denied.Get("x-response-filter-ran"); got != "yes" {
		t.Errorf("x-response-filter-ran %q: on_response_headers should run on the local reply", got)
	}

	allowed := px.mustDo(t, request{Path: "/secret", Header: [][2]string{{"X-Api-Key", "k1"}}})
	if allowed.Status != 200 || allowed.Upstream == nil {
		t.Fatalf("with a key: status %d, upstream saw it: %v", allowed.Status, allowed.Upstream != nil)
	}
	if allowed.Get("x-response-filter-ran") != "yes" {
		t.Error("on_response_headers did not run on the upstream's response")
	}
	if up.Count() != 1 {
		t.Errorf("upstream received %d requests, want 1", up.Count())
	}
}
