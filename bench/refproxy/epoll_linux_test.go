package refproxy

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// The event loop frames Content-Length messages only: a chunked request
// closes the connection rather than going upstream half understood.
func TestEpollRefusesWhatItDoesNotFrame(t *testing.T) {
	addr := start(t, "epoll", echoUpstream(t))
	for _, raw := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"GET /" + strings.Repeat("a", maxHead+maxBody) + " HTTP/1.1\r\n\r\n",
	} {
		c, br := dial(t, addr)
		if _, err := io.WriteString(c, raw); err != nil {
			continue // closed while writing: refused
		}
		b, err := br.ReadByte()
		var ne net.Error
		switch {
		case err == nil:
			t.Errorf("%.60q: answered (first byte %q), want the connection closed", raw, b)
		case errors.As(err, &ne) && ne.Timeout():
			t.Errorf("%.60q: neither answered nor closed (%v), want the connection closed", raw, err)
		}
	}
}
