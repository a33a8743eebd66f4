package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/proxy/config"
	"go.uber.org/zap/zaptest"
)

// recorder is an Applier that keeps the versions it was given.
type recorder struct {
	mu       sync.Mutex
	versions []string
}

func (r *recorder) Apply(_ context.Context, cfg *config.Config, _ []byte, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.versions = append(r.versions, cfg.Version)
	return nil
}

func (r *recorder) applied(v string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, got := range r.versions {
		if got == v {
			return true
		}
	}
	return false
}

// cfg is a sidecar config with one listener answering 200.
const cfg = `{"version":"7","listeners":[{"name":"in","address":"127.0.0.1:0","virtual_hosts":[{"name":"v","domains":["*"],` +
	`"routes":[{"name":"r","match":{"prefix":"/"},"direct_response":{"status":200}}]}]}]}`

// TestRunReadsAWatchResponse: a control plane that predates the config
// answer ignores the Accept header and answers a WatchResponse, which the
// client still reads and applies.
func TestRunReadsAWatchResponse(t *testing.T) {
	var mu sync.Mutex
	var accept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/watch" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		mu.Lock()
		accept = r.Header.Get("Accept")
		mu.Unlock()
		if r.URL.Query().Get("version") == "7" {
			<-r.Context().Done() // nothing newer: hold the poll
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(server.WatchResponse{Node: "s1", Version: "7", Config: cfg, Format: "json"})
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	rec := &recorder{}
	go func() {
		defer close(done)
		_ = client.Run(ctx, client.Options{URL: srv.URL, NodeID: "s1", Applier: rec, Logger: zaptest.NewLogger(t)})
	}()
	t.Cleanup(func() { cancel(); <-done })
	meshtest.Eventually(t, "version 7 from a WatchResponse to be applied", func() bool { return rec.applied("7") })
	mu.Lock()
	defer mu.Unlock()
	if accept != client.ConfigMediaType+", application/json" {
		t.Fatalf("the watch asked for %q", accept)
	}
}
