package control_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/control"
	"github.com/weftmesh/weft/control/ctl"
	"github.com/weftmesh/weft/control/internal/meshtest"
)

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
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

func TestCommand(t *testing.T) {
	if err := control.Command(context.Background(), []string{"-addr", "127.0.0.1:0"}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "-data DIR is required") {
		t.Fatalf("no -data: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuffer
	done := make(chan error, 1)
	data := t.TempDir()
	go func() {
		done <- control.Command(ctx, []string{"-addr", "127.0.0.1:0", "-data", data, "-dir", t.TempDir(), "-log-level", "warn"}, &out, &errw)
	}()
	var url string
	meshtest.Eventually(t, "the command to print its URL and admin token", func() bool {
		s := out.String()
		if i := strings.Index(s, "https://"); i >= 0 && strings.Contains(s, "admin token: ") {
			url = strings.Fields(s[i:])[0]
			return true
		}
		return false
	})
	// As an operator following the printed lines: ca.pem and admin.token.
	for _, want := range []string{filepath.Join(data, "ca.pem"), filepath.Join(data, "admin.token"), "fingerprint sha256:"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the start-up output lacks %q:\n%s", want, out.String())
		}
	}
	var status bytes.Buffer
	if err := ctl.Command(ctx, []string{"-server", url, "-ca", filepath.Join(data, "ca.pem"), "-token-file", filepath.Join(data, "admin.token"), "status"}, &status, &status); err != nil || !strings.Contains(status.String(), "file source") {
		t.Fatalf("status: %v %s", err, status.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Command: %v (stderr: %s)", err, errw.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Command did not return after its context ended")
	}
}
