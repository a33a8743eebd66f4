package cluster

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// A request's last write waits for the answer inside a raw read
// (answerwait.go): the upstream gets the request whole (here larger than
// fasthttp's 4 KiB writer, so written in two parts), an answer that comes
// late is read, one that never comes ends at the deadline, and a
// connection closed instead of answered is an error, never a hang.
func TestDoStreamWaitsForAnswerAfterWrite(t *testing.T) {
	long := strings.Repeat("v", 6000)
	release := make(chan struct{})
	addr := testserver.ServeTCP(t, func(conn net.Conn) {
		br := bufio.NewReader(conn)
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch r.URL.Path {
			case "/late":
				if r.Header.Get("X-Long") != long {
					_, _ = io.WriteString(conn, "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n")
					continue
				}
				<-release
				_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
			case "/never":
				_, _ = io.Copy(io.Discard, br) // until the proxy gives up and closes
				return
			case "/close":
				return
			}
		}
	})
	c := start(t, config.Cluster{Name: "s", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)

	req, resp := streamReq()
	req.SetRequestURI("/late")
	req.Header.Set("X-Long", long)
	done := make(chan error, 1)
	go func() {
		_, err := e.DoStream(req, resp, time.Now().Add(30*time.Second))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("DoStream returned before the upstream answered: %v", err)
	default:
	}
	close(release)
	if err := <-done; err != nil || resp.StatusCode() != 200 || string(resp.Body()) != "late" {
		t.Fatalf("late answer: %v, %d %q", err, resp.StatusCode(), resp.Body())
	}

	req, resp = streamReq()
	req.SetRequestURI("/never")
	if _, err := e.DoStream(req, resp, time.Now().Add(300*time.Millisecond)); !errors.Is(err, fasthttp.ErrTimeout) {
		t.Fatalf("no answer: %v, want a timeout", err)
	}

	req, resp = streamReq()
	req.SetRequestURI("/close")
	req.Header.SetMethod("POST") // not retried on a new connection
	if _, err := e.DoStream(req, resp, time.Now().Add(30*time.Second)); err == nil {
		t.Fatalf("closed without an answer: no error, %d", resp.StatusCode())
	}
}
