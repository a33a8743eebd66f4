package testserver

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
)

// Raw is an upstream that records the exact bytes of every request it
// receives, framed by net/http's parser (a second, independent reading of
// what the proxy sent), and answers each with 200 "ok". A request it
// cannot parse is recorded as it came and the connection is closed.
type Raw struct {
	Addr string

	ln    net.Listener
	mu    sync.Mutex
	got   []string
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// StartRaw starts a Raw upstream; it is closed when the test ends.
func StartRaw(t testing.TB) *Raw {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &Raw{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	u.wg.Add(1)
	go u.accept()
	t.Cleanup(u.Close)
	return u
}

// Close stops accepting, closes every connection and waits for them.
func (u *Raw) Close() {
	_ = u.ln.Close()
	u.mu.Lock()
	for c := range u.conns {
		_ = c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// Requests are the requests received so far, each as its bytes on the
// wire, in order.
func (u *Raw) Requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.got...)
}

// Reset forgets the requests received.
func (u *Raw) Reset() {
	u.mu.Lock()
	u.got = nil
	u.mu.Unlock()
}

func (u *Raw) accept() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns[c] = struct{}{}
		u.mu.Unlock()
		u.wg.Add(1)
		go u.serve(c)
	}
}

func (u *Raw) serve(c net.Conn) {
	defer u.wg.Done()
	defer func() {
		_ = c.Close()
		u.mu.Lock()
		delete(u.conns, c)
		u.mu.Unlock()
	}()
	var wire bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &wire))
	for {
		req, err := http.ReadRequest(br)
		if err == nil {
			_, err = io.Copy(io.Discard, req.Body)
		}
		// What was read from the socket and consumed is this request.
		n := wire.Len() - br.Buffered()
		if n > 0 {
			u.mu.Lock()
			u.got = append(u.got, string(wire.Bytes()[:n]))
			u.mu.Unlock()
		}
		rest := append([]byte(nil), wire.Bytes()[n:]...)
		wire.Reset()
		wire.Write(rest)
		if err != nil {
			return
		}
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")); err != nil {
			return
		}
	}
}
