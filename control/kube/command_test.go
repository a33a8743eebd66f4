package kube_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/control"
	"github.com/weftmesh/weft/control/internal/kubetest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// weft control -kubeconfig: bad flags are refused by name; with a
// kubeconfig of the manifests' service account it serves the cluster.
func TestCommandKubeconfig(t *testing.T) {
	run := func(args ...string) error {
		return control.Command(context.Background(), append([]string{"-data", t.TempDir(), "-addr", "127.0.0.1:0"}, args...), &bytes.Buffer{}, &bytes.Buffer{})
	}
	if err := run("-kube-context", "x"); err == nil || !strings.Contains(err.Error(), "-kube-context needs -kubeconfig") {
		t.Fatalf("-kube-context alone: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	if err := run("-kubeconfig", missing); err == nil || !strings.Contains(err.Error(), "kubeconfig") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("a missing kubeconfig: %v", err)
	}

	e := kubetest.Shared(t)
	kc := e.WriteKubeconfig(controlPlaneConfig(t, e))
	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- control.Command(ctx, []string{"-data", t.TempDir(), "-addr", "127.0.0.1:0", "-kubeconfig", kc, "-scrape", "0"}, &out, &errw)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "kubernetes "+e.URL) {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("weft control -kubeconfig exited: %v\n%s", err, errw.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("weft control -kubeconfig did not start: %s\n%s", out.String(), errw.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
