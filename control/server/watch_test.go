package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/weftmesh/weft/control/client"
)

// TestWatchConfigAnswer: a watch that asks for ConfigMediaType gets the
// snapshot's config as the body, the same bytes a WatchResponse quotes.
func TestWatchConfigAnswer(t *testing.T) {
	if client.ConfigMediaType != ConfigMediaType {
		t.Fatalf("client asks for %q, the server answers %q", client.ConfigMediaType, ConfigMediaType)
	}
	s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), ScrapeInterval: -1, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	do := func(method, path, accept, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	mesh := "kind: Service\nname: orders\nspec: {endpoints: [{address: '127.0.0.1:1'}]}\n---\nkind: Sidecar\nname: n1\nspec: {outbound: '127.0.0.1:0'}\n"
	if resp := do("POST", "/v1/apply", "", mesh); resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("apply: %d %s", resp.StatusCode, b)
	}
	snap := s.store.Node("n1")
	if snap == nil {
		t.Fatal("no snapshot for n1")
	}

	resp := do("GET", "/v1/watch?node=n1", ConfigMediaType+", application/json", "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ConfigMediaType {
		t.Fatalf("config answer: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("X-Weft-Node") != "n1" || resp.Header.Get("X-Weft-Version") != snap.Version {
		t.Fatalf("config answer headers: node %q version %q, want n1 %q", resp.Header.Get("X-Weft-Node"), resp.Header.Get("X-Weft-Version"), snap.Version)
	}
	if string(body) != string(snap.Body) {
		t.Fatalf("config answer body:\n%s\nwant the snapshot's:\n%s", body, snap.Body)
	}

	resp = do("GET", "/v1/watch?node=n1", "", "")
	var wr WatchResponse
	if err := json.NewDecoder(resp.Body).Decode(&wr); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("WatchResponse: %v (%q)", err, resp.Header.Get("Content-Type"))
	}
	if wr.Node != "n1" || wr.Version != snap.Version || wr.Config != string(snap.Body) || wr.Format != "json" {
		t.Fatalf("WatchResponse %+v, want the config answer's node, version and body", wr)
	}
}
