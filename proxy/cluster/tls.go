package cluster

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// applyTLS makes a host client dial TLS with the cluster's config (mTLS to
// a mesh sidecar: the config presents this sidecar's certificate and
// checks the server's SPIFFE ID; see proxy/identity). fasthttp wraps each
// dialed connection in tls.Client and resumes sessions through the
// config's session cache.
func (c *Cluster) applyTLS(hc *fasthttp.HostClient) {
	if c.tls == nil {
		return
	}
	hc.IsTLS = true
	hc.TLSConfig = c.tls
}

// TLS reports whether the cluster's connections are TLS.
func (c *Cluster) TLS() bool { return c.tls != nil }

// tlsKey is the part of a cluster's tls config that shapes it, for Key: a
// changed server id or mode compiles to a new cluster.
func tlsKey(t *config.ClusterTLS) *config.ClusterTLS {
	if t == nil || t.Mode == "disabled" {
		return nil
	}
	k := *t
	if k.Mode == "" {
		k.Mode = "mtls"
	}
	if k.MinVersion == "" {
		k.MinVersion = "1.2"
	}
	return &k
}

// Dial opens one connection to the endpoint for byte forwarding (a TCP
// listener): it counts against the cluster's max_connections breaker and
// connect_timeout like a pooled connection, and is TLS (handshake done)
// when the cluster has tls. The caller closes it.
func (e *Endpoint) Dial() (net.Conn, error) {
	conn, err := e.dial(e.addr, 0)
	if err != nil {
		return nil, err
	}
	if e.c.tls == nil {
		return conn, nil
	}
	tc := tls.Client(conn, e.c.tls)
	_ = tc.SetDeadline(time.Now().Add(e.c.s.ConnectTimeout))
	if err := tc.Handshake(); err != nil {
		_ = tc.Close()
		return nil, fmt.Errorf("cluster %q: endpoint %s: tls: %w", e.c.name, e.addr, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

var (
	schemeHTTPS = []byte("https")
	schemeHTTP  = []byte("http")
)

// setScheme makes req's scheme match the cluster's transport: fasthttp's
// host client refuses a request whose scheme is not its own.
func (c *Cluster) setScheme(req *fasthttp.Request) {
	u := req.URI()
	https := bytes.Equal(u.Scheme(), schemeHTTPS)
	switch {
	case c.tls != nil && !https:
		u.SetSchemeBytes(schemeHTTPS)
	case c.tls == nil && https:
		u.SetSchemeBytes(schemeHTTP)
	}
}
