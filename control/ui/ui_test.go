package ui

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

// TestHandlerServesThePage serves Handler on a loopback listener and
// reads it back: the whole of mesh.html, as HTML, never cached stale, on
// any path and query the mux hands it.
func TestHandlerServesThePage(t *testing.T) {
	want, err := os.ReadFile("mesh.html")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	c := srv.Client()
	for _, path := range []string{"/ui", "/ui?refresh=100000", "/"} {
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache (a new control plane's page must replace an old one)", path, cc)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("GET %s: %d bytes that are not mesh.html (%d bytes)", path, len(got), len(want))
		}
	}
	if !bytes.Contains(want, []byte("<title>Weft mesh</title>")) || !bytes.Contains(want, []byte("<script>")) {
		t.Fatalf("mesh.html is not the mesh view page")
	}
}
