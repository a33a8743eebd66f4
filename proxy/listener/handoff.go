package listener

import (
	"errors"
	"net"
	"sync"
	"time"
)

// handoff is a listener whose accept loop passes each new connection to
// route, which hands it on to Accept with deliver: as it is, wrapped, or
// not at all (it then closes it). route runs in the accept loop, so one
// that must read the connection first (a protocol sniff, a handshake)
// starts its own goroutine for that; the accept loop never waits on a
// client. WrapTLS and the HTTP/2 codec's listener are handoffs.
type handoff struct {
	net.Listener
	route func(h *handoff, c net.Conn)
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
}

func newHandoff(ln net.Listener, route func(h *handoff, c net.Conn)) *handoff {
	h := &handoff{Listener: ln, route: route, conns: make(chan net.Conn), done: make(chan struct{})}
	go h.acceptLoop()
	return h
}

func (h *handoff) acceptLoop() {
	for {
		c, err := h.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			h.closeWith(err)
			return
		}
		h.route(h, c)
	}
}

// deliver hands c to Accept, or closes it once the listener is closed.
func (h *handoff) deliver(c net.Conn) {
	select {
	case h.conns <- c:
	case <-h.done:
		_ = c.Close()
	}
}

// Accept returns the next connection route delivered.
func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		if h.err != nil {
			return nil, h.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections not yet handed out are closed.
func (h *handoff) Close() error { return h.closeWith(nil) }

// closeWith closes once; cause (if first) is what Accept returns.
func (h *handoff) closeWith(cause error) error {
	var err error
	h.once.Do(func() {
		h.err = cause
		close(h.done)
		err = h.Listener.Close()
	})
	return err
}
