package control_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/control"
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
	go func() {
		done <- control.Command(ctx, []string{"-addr", "127.0.0.1:0", "-data", t.TempDir(), "-dir", t.TempDir(), "-log-level", "warn"}, &out, &errw)
	}()
	var url string
	meshtest.Eventually(t, "the command to print its URL", func() bool {
		s := out.String()
		if i := strings.Index(s, "http://"); i >= 0 {
			url = strings.Fields(s[i:])[0]
			return true
		}
		return false
	})
	if code, body := meshtest.Do(t, "GET", url+"/v1/status", ""); code != 200 || !strings.Contains(body, `"file_source"`) {
		t.Fatalf("status: %d %s", code, body)
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
