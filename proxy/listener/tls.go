package listener

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/identity"
)

// TLS modes of a listener (config listener tls.mode).
const (
	TLSStrict     = "strict"
	TLSPermissive = "permissive"
)

// firstByteTimeout bounds how long a permissive listener waits for a new
// connection's first byte to tell TLS from plaintext.
const firstByteTimeout = 10 * time.Second

// TLSInfoer is a connection that knows its TLS facts (the proxy reads it
// from fasthttp's RequestCtx.Conn to fill filter.Stream.TLS).
type TLSInfoer interface {
	TLSInfo() *filter.TLSInfo
}

// TLSConn is a server-side TLS connection that computes its filter.TLSInfo
// once, after the handshake. fasthttp sees it as TLS (it has Handshake and
// ConnectionState).
type TLSConn struct {
	*tls.Conn
	info *filter.TLSInfo
}

// TLSInfo describes the connection: MTLS and the peer's SPIFFE ID when the
// peer presented a certificate (which the handshake verified). It is
// computed on first use and cached; one goroutine serves a connection.
func (c *TLSConn) TLSInfo() *filter.TLSInfo {
	if c.info != nil {
		return c.info
	}
	cs := c.Conn.ConnectionState()
	if !cs.HandshakeComplete {
		return nil
	}
	info := &filter.TLSInfo{ServerName: cs.ServerName}
	if len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		info.MTLS = true
		info.PeerURISAN = identity.PeerID(leaf)
		info.PeerSubject = leaf.Subject.String()
	}
	c.info = info
	return info
}

// TLSSelector returns a listener's TLS mode ("" or "disabled": plaintext;
// TLSStrict; TLSPermissive) and config; it is asked per accepted
// connection, so a config swap changes TLS without rebinding the port.
type TLSSelector func() (mode string, cfg *tls.Config)

// WrapTLS makes ln speak TLS as sel says. In strict mode every connection
// is TLS (a plaintext client fails the handshake and is closed). In
// permissive mode each connection's first byte decides: 0x16 (a TLS
// handshake record) is served as TLS, anything else as plaintext on the
// same port; the peek runs in the connection's own goroutine, bounded by
// 10s, never in the accept loop.
func WrapTLS(ln net.Listener, sel TLSSelector) net.Listener {
	d := &dynamicTLS{Listener: ln, sel: sel, conns: make(chan net.Conn), done: make(chan struct{})}
	d.wg.Add(1)
	go d.acceptLoop()
	return d
}

type dynamicTLS struct {
	net.Listener
	sel   TLSSelector
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error
	wg    sync.WaitGroup
}

func (d *dynamicTLS) acceptLoop() {
	defer d.wg.Done()
	for {
		c, err := d.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			d.closeWith(err)
			return
		}
		mode, cfg := d.sel()
		switch {
		case cfg == nil || (mode != TLSStrict && mode != TLSPermissive):
			d.deliver(c)
		case mode == TLSStrict:
			d.deliver(&TLSConn{Conn: tls.Server(c, cfg)})
		default:
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				if conn, ok := classify(c, cfg); ok {
					d.deliver(conn)
				} else {
					_ = c.Close()
				}
			}()
		}
	}
}

func (d *dynamicTLS) deliver(c net.Conn) {
	select {
	case d.conns <- c:
	case <-d.done:
		_ = c.Close()
	}
}

// classify reads the first byte and wraps the connection accordingly.
func classify(c net.Conn, cfg *tls.Config) (net.Conn, bool) {
	_ = c.SetReadDeadline(time.Now().Add(firstByteTimeout))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return nil, false
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, first: b[0], has: true}
	if b[0] == 0x16 {
		return &TLSConn{Conn: tls.Server(pc, cfg)}, true
	}
	return pc, true
}

// Accept returns the next connection, TLS-wrapped as the mode says.
func (d *dynamicTLS) Accept() (net.Conn, error) {
	select {
	case c := <-d.conns:
		return c, nil
	case <-d.done:
		if d.err != nil {
			return nil, d.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections not yet handed out are closed.
func (d *dynamicTLS) Close() error { return d.closeWith(nil) }

// closeWith closes once; cause (if first) is what Accept returns.
func (d *dynamicTLS) closeWith(cause error) error {
	var err error
	d.once.Do(func() {
		d.err = cause
		close(d.done)
		err = d.Listener.Close()
	})
	return err
}

// peekedConn gives back the byte read to classify the connection.
type peekedConn struct {
	net.Conn
	first byte
	has   bool
}

func (c *peekedConn) Read(b []byte) (int, error) {
	if c.has && len(b) > 0 {
		b[0] = c.first
		c.has = false
		if len(b) == 1 {
			return 1, nil
		}
		n, err := c.Conn.Read(b[1:])
		if err != nil && n == 0 {
			// The byte is delivered now; the error comes with the next Read.
			return 1, nil
		}
		return n + 1, err
	}
	return c.Conn.Read(b)
}

// CloseWrite half-closes the underlying TCP connection, so an L4 tunnel can
// pass a FIN through a permissive listener's plaintext connection.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
