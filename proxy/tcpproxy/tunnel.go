package tcpproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// bufSize is each direction's copy buffer: a connection holds two while it
// forwards, taken from a pool.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// tunnel copies bytes between a downstream and an upstream connection
// until both directions end.
type tunnel struct {
	down, up net.Conn
	idle     time.Duration
	// last is the unix-nano time a byte was last read either way.
	last atomic.Int64
	once sync.Once
	flag string // why the tunnel was aborted; written once, under once
	// chain is the listener's network filters (nil: bytes go through as
	// read).
	chain *chain
}

func newTunnel(down, up net.Conn, idle time.Duration) *tunnel {
	t := &tunnel{down: down, up: up, idle: idle}
	t.last.Store(time.Now().UnixNano())
	return t
}

// run splices until both directions end and closes both connections. It
// returns the bytes read from the downstream (in) and written to it (out),
// and the flag of an abnormal end: "SI" idle timeout, "DC" downstream or
// "UC" upstream broke off (an error, not a FIN).
func (t *tunnel) run(inCtr, outCtr prometheus.Counter) (in, out int64, flag string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		out = t.pump(t.down, t.up, outCtr, "UC", "DC", 1)
	}()
	in = t.pump(t.up, t.down, inCtr, "DC", "UC", 0)
	<-done
	_ = t.down.Close()
	_ = t.up.Close()
	return in, out, t.flag
}

// abort ends the tunnel at once: both connections are closed (which
// unblocks the other direction), and the first reason is kept.
func (t *tunnel) abort(flag string) {
	t.once.Do(func() {
		t.flag = flag
		_ = t.down.Close()
		_ = t.up.Close()
	})
}

// pump copies src to dst. At src's EOF it half-closes dst (a FIN, or a TLS
// close_notify) and returns, so the other direction carries on; when dst
// cannot be half-closed, the tunnel ends instead. Any other error aborts
// the tunnel. Deadlines implement the idle timeout: they are pushed ahead
// only when less than 90% of it is left, so a busy connection rarely
// touches them, and a read that times out while the other direction moved
// bytes waits again instead of ending.
// dir is 0 for the bytes from the downstream, 1 for those from the
// upstream (what the network filters, if any, are told).
func (t *tunnel) pump(dst, src net.Conn, ctr prometheus.Counter, srcFlag, dstFlag string, dir int) int64 {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	var rdl, wdl time.Time
	refresh := t.idle * 9 / 10
	now := time.Now()
	for {
		if rdl.Sub(now) < refresh {
			rdl = now.Add(t.idle)
			_ = src.SetReadDeadline(rdl)
		}
		nr, err := src.Read(buf)
		now = time.Now()
		out := buf[:nr]
		if t.chain != nil && (nr > 0 || errors.Is(err, io.EOF)) {
			var closeConn bool
			if out, closeConn = t.chain.data(dir, out, errors.Is(err, io.EOF)); closeConn {
				t.abort(flagFilterClosed)
				return n
			}
			if errors.Is(err, io.EOF) {
				t.chain.close(dir == 1)
			}
		}
		if nr > 0 {
			t.last.Store(now.UnixNano())
		}
		if len(out) > 0 {
			if wdl.Sub(now) < refresh {
				wdl = now.Add(t.idle)
				_ = dst.SetWriteDeadline(wdl)
			}
			if _, werr := dst.Write(out); werr != nil {
				// A write stuck for the whole idle timeout: the peer stopped
				// reading. (A TLS write that timed out is unusable anyway.)
				if errors.Is(werr, os.ErrDeadlineExceeded) {
					t.abort("SI")
				} else {
					t.abort(dstFlag)
				}
				return n
			}
		}
		if nr > 0 {
			n += int64(nr)
			ctr.Add(float64(nr))
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if until := time.Unix(0, t.last.Load()).Add(t.idle); until.After(now) {
				rdl = until
				_ = src.SetReadDeadline(rdl)
				continue
			}
			t.abort("SI")
			return n
		}
		if errors.Is(err, io.EOF) {
			if !closeWrite(dst) {
				t.abort("")
			}
			return n
		}
		t.abort(srcFlag)
		return n
	}
}

// closeWrite half-closes c, reporting whether it could.
func closeWrite(c net.Conn) bool {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite() == nil
	}
	return false
}
