package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// DefaultAddress is where the admin server listens unless configured.
const DefaultAddress = "127.0.0.1:9901"

// Source is what the admin server shows.
type Source interface {
	// Ready reports whether a config is in force and listeners are up.
	Ready() bool
	// ConfigDump is the config in force, its version and the last rejected
	// change, as a JSON-able value.
	ConfigDump() any
	// Clusters is every cluster's endpoints with health and ejection state.
	Clusters() any
}

// Server is a running admin server.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Start listens on addr and serves until Close.
func Start(addr string, src Source, reg *prometheus.Registry, log *zap.Logger) (*Server, error) {
	if addr == "" {
		addr = DefaultAddress
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if !src.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable) // Error adds the newline
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, src.ConfigDump()) })
	mux.HandleFunc("/clusters", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, src.Clusters()) })
	mux.Handle("/stats/prometheus", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	uiRoutes(mux, reg)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		_, _ = fmt.Fprint(w, "weft admin\n/ready\n/healthz\n/config_dump\n/clusters\n/stats/prometheus\n/ui\n/debug/pprof/\n")
	})
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", zap.Error(err))
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server. It closes the socket itself too: a Shutdown that
// runs before the serving goroutine has started does not know the listener
// yet, which would keep the port open (and accepting into its backlog).
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	return err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
