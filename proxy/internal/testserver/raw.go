package testserver

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Raw is an upstream that records the exact bytes of every request it
// receives, framed by net/http's parser (a second, independent reading of
// what the proxy sent), and answers each complete one with 200 "ok" and
// Connection: close. A request it cannot read to its end (a head it cannot
// parse, a body cut short) is recorded as it came, marked incomplete, and
// the connection is closed.
//
// After answering, Raw still reads the connection until the proxy closes
// it: whatever else the proxy sent on it is recorded as further requests,
// so a smuggled request still shows. Answering Connection: close makes
// every connection carry one exchange and end, which is what Settle waits
// for.
type Raw struct {
	Addr string

	ln      net.Listener
	mu      sync.Mutex
	got     []RawRequest
	conns   map[net.Conn]struct{}
	changed chan struct{} // closed and replaced when conns changes
	wg      sync.WaitGroup
}

// RawRequest is one request a Raw upstream received.
type RawRequest struct {
	// Wire is the request's bytes as they came.
	Wire string
	// Complete is whether net/http read the whole request, head and
	// body, without error. An incomplete request is one the proxy began
	// and then cut (its connection closed mid-body), or one net/http
	// could not parse.
	Complete bool
}

// StartRaw starts a Raw upstream; it is closed when the test ends.
func StartRaw(t testing.TB) *Raw {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &Raw{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}, changed: make(chan struct{})}
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

// Requests are the requests received so far, complete or not, each as its
// bytes on the wire, in order.
func (u *Raw) Requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]string, 0, len(u.got))
	for _, r := range u.got {
		out = append(out, r.Wire)
	}
	return out
}

// Received are the requests received so far, in order, each marked
// complete or not.
func (u *Raw) Received() []RawRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]RawRequest(nil), u.got...)
}

// Reset forgets the requests received.
func (u *Raw) Reset() {
	u.mu.Lock()
	u.got = nil
	u.mu.Unlock()
}

// Open is the number of connections accepted and not yet done with
// (a connection is done once its requests are recorded and it is closed).
func (u *Raw) Open() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// Settle waits, up to timeout, until every connection made to the
// upstream before the call is done with, its requests recorded: after it,
// Requests and Received hold everything sent on those connections. It
// first makes a connection of its own and waits for it to be accepted, so
// that every connection already queued in the listener's backlog has been
// accepted too (the backlog is first in, first out); then it closes its
// own and waits for Open to reach 0. Settle needs whoever connected to
// close each connection once it has its answer (the proxy does, as every
// answer says Connection: close); a connection left open mid-request
// makes it fail. It reports false when the timeout passed first.
func (u *Raw) Settle(timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	probe, err := net.DialTimeout("tcp", u.Addr, timeout)
	if err != nil {
		return false
	}
	me := probe.LocalAddr().String()
	accepted := func() bool {
		for c := range u.conns {
			if c.RemoteAddr().String() == me {
				return true
			}
		}
		return false
	}
	ok := u.waitFor(accepted, deadline.C)
	_ = probe.Close()
	return ok && u.waitFor(func() bool { return len(u.conns) == 0 }, deadline.C)
}

// waitFor waits until cond (called with u.mu held) holds, or until done.
func (u *Raw) waitFor(cond func() bool, done <-chan time.Time) bool {
	for {
		u.mu.Lock()
		ok, changed := cond(), u.changed
		u.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-done:
			return false
		}
	}
}

// track adds or removes c from the open connections; u.mu is held.
func (u *Raw) track(c net.Conn, open bool) {
	if open {
		u.conns[c] = struct{}{}
	} else {
		delete(u.conns, c)
	}
	close(u.changed)
	u.changed = make(chan struct{})
}

func (u *Raw) accept() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.track(c, true)
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
		u.track(c, false)
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
			u.got = append(u.got, RawRequest{Wire: string(wire.Bytes()[:n]), Complete: err == nil})
			u.mu.Unlock()
		}
		rest := append([]byte(nil), wire.Bytes()[n:]...)
		wire.Reset()
		wire.Write(rest)
		if err != nil {
			return
		}
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")); err != nil {
			return
		}
	}
}
