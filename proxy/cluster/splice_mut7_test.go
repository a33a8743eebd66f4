package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/internal/testserver"
)

// A spliced upload to an upstream that reads slowly but steadily lasts
// longer than the idle timeout and is not cut: each splice step pushes
// the upstream's write deadline ahead, which reaches the socket at once
// (the connection's lazily kept deadlines are settled before the splice
// writes the socket itself).
func TestSplicedUploadSeesPushedDeadlines(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	const size = 3 << 20
	addr := testserver.ServeTCP(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for { // the head
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		buf := make([]byte, 32<<10)
		n := 0
		for n < size {
			// A pace, not a measurement: 3 MiB take about two seconds,
			// any 256 KiB of it (a splice step) about 160 ms.
			time.Sleep(20 * time.Millisecond)
			k, err := br.Read(buf[:min(len(buf), size-n)])
			n += k
			if err != nil {
				return
			}
		}
		_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\ngot %d", len(fmt.Sprint("got ", n)), n)
	})
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr), IdleTimeout: config.Duration(time.Second)}, Options{})
	e := c.Pick(0, false, nil)
	w, r := testClientSocket(t)
	sendBody(t, w, size, false)
	body := &socketBody{src: r, left: size, maxRead: 1000, offer: true}
	req, resp := streamReq()
	req.Header.SetMethod("POST")
	type result struct {
		rb  ResponseBody
		err error
	}
	done := make(chan result, 1)
	go func() {
		rb, err := e.DoStreamBody(req, body, size, resp, time.Now().Add(30*time.Second))
		done <- result{rb, err}
	}()
	select {
	case res := <-done:
		uploadAnswer(t, res.rb, res.err, resp, size)
	case <-time.After(60 * time.Second): // a safety net, not a measurement
		t.Fatal("no answer")
	}
	spliced, _, _ := body.splices()
	var n int64
	for _, k := range spliced {
		n += k
	}
	if n == 0 {
		t.Fatal("nothing was spliced")
	}
}

// A spliced stretch longer than one pipe's worth takes from the client's
// socket exactly the body's bytes, however much more the socket holds
// (the next pipelined request stays there for the server to read).
func TestDoStreamBodySpliceLeavesWhatFollows(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	addr, got := uploadServer(t)
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	const rest, tail = 300 << 10, 4000 // rest: more than one 256 KiB step
	total := 1000 + rest
	w, r := testClientSocket(t)
	data := sendBody(t, w, total+tail, false) // the body and what follows, in one write
	body := &socketBody{src: r, left: int64(total), maxRead: 1000, offer: true}
	req, resp := streamReq()
	req.Header.SetMethod("POST")
	rb, err := e.DoStreamBody(req, body, total, resp, time.Now().Add(30*time.Second))
	up := received(t, got)
	if up.err != nil || !bytes.Equal(up.body, data[:total]) {
		t.Fatalf("the upstream read %d bytes (%v), want %d", len(up.body), up.err, total)
	}
	uploadAnswer(t, rb, err, resp, total)
	if spliced, _, _ := body.splices(); fmt.Sprint(spliced) != fmt.Sprint([]int64{rest}) {
		t.Fatalf("spliced %v, want [%d]", spliced, rest)
	}
	_ = r.SetReadDeadline(time.Now().Add(20 * time.Second)) // a safety net
	left := make([]byte, tail)
	if _, err := io.ReadFull(r, left); err != nil || !bytes.Equal(left, data[total:]) {
		t.Fatalf("what followed the body: %v", err)
	}
}

// A client that resets its connection mid-splice: the splice's own error
// (ECONNRESET, after the bytes that came before it) is what BodySpliced is
// told and what DoStreamBody's *BodyError holds, not an end of stream.
func TestDoStreamBodySpliceClientReset(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	addr, got := uploadServer(t)
	c := start(t, config.Cluster{Name: "u", Endpoints: static(addr)}, Options{})
	e := c.Pick(0, false, nil)
	w, r := testClientSocket(t)
	const sent = 1000 + 50000 // of the 200 KiB announced
	if _, err := w.Write(bytes.Repeat([]byte{'r'}, sent)); err != nil {
		t.Fatal(err)
	}
	_ = w.(*net.TCPConn).SetLinger(0)
	_ = w.Close() // RST, after the bytes already sent
	body := &socketBody{src: r, left: 200 << 10, maxRead: 1000, offer: true}
	req, resp := streamReq()
	req.Header.SetMethod("POST")
	rb, err := e.DoStreamBody(req, body, 200<<10, resp, time.Now().Add(30*time.Second))
	var be *BodyError
	if rb != nil || !errors.As(err, &be) || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%v (%T), body %v: want a *BodyError of the client's reset", err, err, rb != nil)
	}
	spliced, errs, _ := body.splices()
	if len(spliced) != 1 || spliced[0] != sent-1000 || !errors.Is(errs[0], syscall.ECONNRESET) {
		t.Fatalf("spliced %v (%v), want [%d] and the client's reset", spliced, errs, sent-1000)
	}
	if up := received(t, got); up.err == nil {
		t.Fatalf("the upstream read a whole request (%d bytes)", len(up.body))
	}
}
