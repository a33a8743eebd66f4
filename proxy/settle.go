package proxy

import (
	"runtime/debug"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/internal/exepages"
)

// settleDelay is how long after the last start-up or reload that loaded
// code the proxy gives memory back.
const settleDelay = 2 * time.Second

// settler gives back, once a start (or a reload that loaded a Wasm
// module) is over, the memory only that needed: the Go heap's garbage
// (debug.FreeOSMemory: a GC, then every free page returned) and then the
// pages of the executable that package initialisation and compiling
// touched (package exepages). In the one weft binary most of the
// executable's resident pages at start are the control plane's (the
// Kubernetes client, etcd, gRPC), which a sidecar initialises and never
// runs: an idle `weft proxy` held ~30 MiB of them (docs/benchmarks.md).
// The heap goes first because a GC reads the types and function tables it
// needs from the executable; what is read again afterwards is the working
// set and stays. Both run once per burst, never per request.
type settler struct {
	log *zap.Logger

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

// soon asks for a settle settleDelay after the last call.
func (s *settler) soon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	if s.timer == nil {
		s.timer = time.AfterFunc(settleDelay, s.run)
		return
	}
	s.timer.Reset(settleDelay)
}

func (s *settler) run() {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return
	}
	debug.FreeOSMemory()
	res, err := exepages.Drop()
	if err != nil {
		s.log.Warn("giving back the executable's pages failed", zap.Error(err))
		return
	}
	s.log.Info("memory given back after start or reload", zap.Int64("executable_pages_kib", res.Resident>>10))
}

// stop cancels a pending settle.
func (s *settler) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
	}
}
