package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// h2cClient is the H2C protocol: HTTP/2 with prior knowledge over plain
// TCP, worker w's requests on connection w % Conns, so that Connections
// requests in flight share exactly Conns connections. A connection the
// server closed or sent GOAWAY on is replaced on the next request.
type h2cClient struct {
	url     string
	method  string
	headers []Header
	t       *http2.Transport
	conns   []*h2cConn
}

type h2cConn struct {
	mu   sync.Mutex
	addr string
	cc   *http2.ClientConn
}

func newH2CClient(cfg Config, host string) *h2cClient {
	c := &h2cClient{
		url: cfg.URL, method: cfg.Method, headers: cfg.Headers,
		t: &http2.Transport{AllowHTTP: true},
	}
	for range cfg.Conns {
		c.conns = append(c.conns, &h2cConn{addr: host})
	}
	return c
}

// get returns the connection's client connection, dialling when there is
// none or it takes no new request.
func (c *h2cClient) get(i int, timeout time.Duration) (*http2.ClientConn, error) {
	hc := c.conns[i]
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.cc != nil && hc.cc.CanTakeNewRequest() {
		return hc.cc, nil
	}
	if hc.cc != nil {
		_ = hc.cc.Close()
		hc.cc = nil
	}
	nc, err := net.DialTimeout("tcp", hc.addr, timeout)
	if err != nil {
		return nil, err
	}
	cc, err := c.t.NewClientConn(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("h2c: %w", err)
	}
	hc.cc = cc
	return cc, nil
}

func (c *h2cClient) Do(w int, timeout time.Duration) (int, error) {
	cc, err := c.get(w%len(c.conns), timeout)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, nil)
	if err != nil {
		return 0, err
	}
	for _, h := range c.headers {
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

func (c *h2cClient) Close() error {
	for _, hc := range c.conns {
		hc.mu.Lock()
		if hc.cc != nil {
			_ = hc.cc.Close()
			hc.cc = nil
		}
		hc.mu.Unlock()
	}
	return nil
}
