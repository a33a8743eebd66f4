package listener

import "net"

// TCPConn is the plain TCP connection under a client connection the
// listener accepted, for a response body written around fasthttp's
// writer (spliced): nil over TLS, or while bytes read ahead for protocol
// detection are still to be read. The wrappers only act on reads, so a
// write to it is a write to the client. The connection's deadlines are
// set on it at once from then on (not kept lazily: sockio), so they bound
// the caller's own reads and writes.
func TCPConn(c net.Conn) *net.TCPConn {
	if sc, ok := c.(*strictConn); ok {
		return sc.rawSocket()
	}
	tc, held := tcpBelow(c)
	if held {
		return nil
	}
	return tc
}

// tcpBelow finds the plain TCP connection under c's wrappers; held
// reports that bytes read ahead for protocol detection are still to be
// read before it.
func tcpBelow(c net.Conn) (tc *net.TCPConn, held bool) {
	for {
		switch v := c.(type) {
		case *net.TCPConn:
			return v, false
		case *strictConn:
			c = v.Conn
		case *prefixConn:
			if len(v.prefix) > 0 {
				return nil, true
			}
			c = v.Conn
		default:
			return nil, false
		}
	}
}
