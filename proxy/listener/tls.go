package listener

import (
	"crypto/tls"
	"net"
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
	return newHandoff(ln, func(h *handoff, c net.Conn) {
		mode, cfg := sel()
		switch {
		case cfg == nil || (mode != TLSStrict && mode != TLSPermissive):
			h.deliver(c)
		case mode == TLSStrict:
			h.deliver(&TLSConn{Conn: tls.Server(c, cfg)})
		default:
			go func() {
				if conn, ok := classify(c, cfg); ok {
					h.deliver(conn)
				} else {
					_ = c.Close()
				}
			}()
		}
	})
}

// classify reads the first byte and wraps the connection accordingly.
func classify(c net.Conn, cfg *tls.Config) (net.Conn, bool) {
	_ = c.SetReadDeadline(time.Now().Add(firstByteTimeout))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return nil, false
	}
	_ = c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, prefix: b[:]}
	if b[0] == 0x16 {
		return &TLSConn{Conn: tls.Server(pc, cfg)}, true
	}
	return pc, true
}
