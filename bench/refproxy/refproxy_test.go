package refproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/bench/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// echoUpstream answers every request with what it received: method, path,
// body, whether Connection and X-Forwarded-For reached it.
func echoUpstream(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Connection", r.Header.Get("Connection"))
		w.Header().Set("X-Seen-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// start runs the reference proxy kind in front of up until the test ends
// and returns its address; the test fails if Serve does not return nil
// once stopped.
func start(t *testing.T, kind, up string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs, done := make(chan net.Addr, 1), make(chan error, 1)
	go func() { done <- Serve(ctx, kind, "127.0.0.1:0", up, func(a net.Addr) { addrs <- a }) }()
	var addr string
	select {
	case a := <-addrs:
		addr = a.String()
	case err := <-done:
		cancel()
		t.Fatalf("%s: %v", kind, err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("%s: not ready", kind)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Serve: %v", kind, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s: Serve did not return after its context ended", kind)
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s: still accepting after it stopped", kind)
		}
	})
	return addr
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, bufio.NewReader(c)
}

func readAnswer(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestKeepAliveAndBodies(t *testing.T) {
	up := echoUpstream(t)
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			c, br := dial(t, start(t, kind, up))
			reqs := []struct{ raw, want string }{
				{"GET /one HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", "GET /one "},
				{"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "POST /two hello"},
				{"GET /three HTTP/1.1\r\nHost: x\r\n\r\n", "GET /three "},
			}
			for _, r := range reqs {
				if _, err := io.WriteString(c, r.raw); err != nil {
					t.Fatal(err)
				}
				resp, body := readAnswer(t, br)
				if resp.StatusCode != 200 || body != r.want {
					t.Fatalf("%q: %d %q, want 200 %q", r.raw, resp.StatusCode, body, r.want)
				}
				if got := resp.Header.Get("X-Seen-Connection"); got != "" {
					t.Errorf("%q: the upstream got Connection %q: a hop-by-hop header went through", r.raw, got)
				}
				if kind == "epoll" && resp.Header.Get("X-Seen-Forwarded-For") != "127.0.0.1" {
					t.Errorf("%q: the upstream got X-Forwarded-For %q", r.raw, resp.Header.Get("X-Seen-Forwarded-For"))
				}
			}
			// Two requests in one write: answered in order.
			if _, err := io.WriteString(c, reqs[0].raw+reqs[1].raw); err != nil {
				t.Fatal(err)
			}
			for _, r := range reqs[:2] {
				if _, body := readAnswer(t, br); body != r.want {
					t.Fatalf("pipelined: %q, want %q", body, r.want)
				}
			}
		})
	}
}

func TestServeRefusesBadArguments(t *testing.T) {
	ctx := context.Background()
	if err := Serve(ctx, "nginx", "127.0.0.1:0", "127.0.0.1:1", nil); err == nil || !strings.Contains(err.Error(), `kind "nginx"`) {
		t.Errorf("unknown kind: %v", err)
	}
	if err := Serve(ctx, "epoll", "127.0.0.1:0", "", nil); err == nil || !strings.Contains(err.Error(), "upstream") {
		t.Errorf("no upstream: %v", err)
	}
}
