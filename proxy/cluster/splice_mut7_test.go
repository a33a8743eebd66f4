package cluster

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

// A spliced upload to an upstream that reads slowly but steadily lasts
// longer than the idle timeout and is not cut: each splice step pushes
// the upstream's write deadline ahead, which reaches the socket at once
// (the connection's lazily kept deadlines are settled before the splice
// writes the socket itself).
func TestDoStreamBodySplicedSlowUpstreamNotCut(t *testing.T) {
	if !spliceOK {
		t.Skip("no splice on this OS")
	}
	const size = 3 << 20
	addr := rawServer(t, func(c net.Conn) {
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
