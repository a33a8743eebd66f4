package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWatchAndAckRequests checks the requests' shapes; authentication is
// off (-insecure-api) so an undeclared node can watch and NACK.
func TestWatchAndAckRequests(t *testing.T) {
	s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), ScrapeInterval: -1, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, b := get("GET", "/v1/watch", ""); code != 400 || !strings.Contains(b, "node is required") {
		t.Fatalf("no node: %d %s", code, b)
	}
	if code, _ := get("GET", "/v1/watch?node=x&wait=bogus", ""); code != 400 {
		t.Fatalf("bad wait: %d", code)
	}
	t0 := time.Now()
	if code, _ := get("GET", "/v1/watch?node=x&wait=50ms", ""); code != 204 {
		t.Fatalf("nothing to send: %d", code)
	}
	if time.Since(t0) < 50*time.Millisecond {
		t.Fatal("the watch answered before its wait ended")
	}
	if code, _ := get("POST", "/v1/ack", `{"node":"x"}`); code != 400 {
		t.Fatalf("ack without version: %d", code)
	}
	if code, _ := get("POST", "/v1/ack", `{"node":"x","version":"3","error":"boom"}`); code != 204 {
		t.Fatalf("nack: %d", code)
	}
	if code, b := get("GET", "/v1/status", ""); code != 200 || !strings.Contains(b, `"error": "boom"`) || !strings.Contains(b, `"declared": false`) {
		t.Fatalf("status: %d %s", code, b)
	}
	if code, b := get("GET", "/v1/resources/gateways", ""); code != 404 || !strings.Contains(b, `unknown kind`) {
		t.Fatalf("unknown kind: %d %s", code, b)
	}
	if code, b := get("PUT", "/v1/resources/Service/default/a", "kind: Service\nname: b\nspec: {endpoints: [{address: '1.1.1.1:1'}]}"); code != 400 || !strings.Contains(b, "the path names") {
		t.Fatalf("mismatched PUT: %d %s", code, b)
	}
	if code, b := get("POST", "/v1/resources", "kind: Service\nname: a\nspec: {endpointz: []}"); code != 400 || !strings.Contains(b, "endpointz") {
		t.Fatalf("unknown field: %d %s", code, b)
	}
}
