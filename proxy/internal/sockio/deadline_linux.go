package sockio

import (
	"errors"
	"os"
	"time"
)

// Deadlines. A server sets a connection's deadlines several times per
// request (fasthttp: the idle timeout before each request, the read timeout
// once it starts, the write timeout before the answer; the proxy: the route
// timeout on the upstream connection), and each set moves a timer in the
// runtime's heap. Nearly every one is later than the one before, so Socket
// keeps them lazily, as nginx keeps its timers in a tree it rarely touches:
// a deadline earlier than the one the socket has is set at once; a later
// one is only recorded, and when the socket's (earlier) deadline fires, the
// Read or Write it stopped sets the recorded one and goes on. A connection
// busy with requests then moves its timers about once per timeout instead
// of three to five times per request. A timeout reaches the caller only
// once the deadline it last set has passed.

// deadline is one direction's deadline.
type deadline struct {
	armed time.Time // the socket's own (zero: none)
	want  time.Time // the caller's latest (zero: none)
	known bool      // armed is what the socket has
}

// earlier reports whether deadline a comes before deadline b (zero: never).
func earlier(a, b time.Time) bool {
	if a.IsZero() {
		return false
	}
	return b.IsZero() || a.Before(b)
}

// SetDeadline sets both deadlines (see the section above).
func (s *Socket) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline: at once when it is earlier than
// the socket's, else when the socket's fires.
func (s *Socket) SetReadDeadline(t time.Time) error { return s.set(&s.rd, t, false) }

// SetWriteDeadline sets the write deadline like SetReadDeadline.
func (s *Socket) SetWriteDeadline(t time.Time) error { return s.set(&s.wd, t, true) }

func (s *Socket) set(d *deadline, t time.Time, write bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.want = t
	if !s.eager && d.known && !earlier(t, d.armed) {
		return nil // the socket's fires first: Read or Write re-arms then
	}
	d.armed, d.known = t, true
	return s.arm(t, write)
}

func (s *Socket) arm(t time.Time, write bool) error {
	if write {
		return s.tc.SetWriteDeadline(t)
	}
	return s.tc.SetReadDeadline(t)
}

// rearm is called when a Read or Write stopped on a timeout: it sets the
// caller's deadline when it is later than the one that fired and has not
// passed, and reports whether the call may go on.
func (s *Socket) rearm(d *deadline, write bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !d.known || d.armed.Equal(d.want) {
		return false // the caller's own deadline
	}
	d.armed = d.want
	_ = s.arm(d.want, write)
	return d.want.IsZero() || time.Now().Before(d.want)
}

// Settle gives the socket the caller's deadlines now, and from then on
// sets every deadline at once: for a caller about to read or write the
// connection itself (a splice), where a lazily kept deadline would stop
// its call with no one to re-arm it.
func (s *Socket) Settle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eager {
		return
	}
	s.eager = true
	for _, d := range [2]*deadline{&s.rd, &s.wd} {
		if d.known && !d.armed.Equal(d.want) {
			d.armed = d.want
			_ = s.arm(d.want, d == &s.wd)
		}
	}
}

// timedOut reports whether err is a deadline's.
func timedOut(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
