package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// dialTimeout bounds one connection attempt to a replica, so a replica
// whose host does not answer at all is left quickly for the next one.
const dialTimeout = 2 * time.Second

// SplitURLs parses a control plane address list: base URLs separated by
// commas (the replicas of one control plane, tried in order). Each must be
// an absolute http or https URL with a host; empty items are ignored.
func SplitURLs(list string) ([]string, error) {
	var out []string
	for i, s := range strings.Split(list, ",") {
		s = strings.TrimSuffix(strings.TrimSpace(s), "/")
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("control plane address %d %q: %w", i+1, s, err)
		}
		if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("control plane address %d %q: want https://HOST[:PORT]", i+1, s)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("no control plane address")
	}
	return out, nil
}

// endpoint is one replica to try: a base URL and, when its host name
// resolved to several addresses, the one address to dial (TLS still
// verifies the name in the URL).
type endpoint struct {
	base string
	dial string // "" dials the URL's host
	hc   *http.Client
}

func (e *endpoint) String() string {
	if e.dial == "" {
		return e.base
	}
	return e.base + " (" + e.dial + ")"
}

// replicas is the ordered list of endpoints a sidecar fails over across.
// Not safe for concurrent use: the runner's loop owns it.
type replicas struct {
	urls   []string
	tls    *tls.Config
	lookup func(ctx context.Context, host string) ([]string, error)
	list   []*endpoint
	cur    int
	// pool keeps one transport per (base, address) across re-resolutions,
	// so connections are reused and none leak.
	pool map[string]*endpoint
}

func newReplicas(urls []string, tc *tls.Config) *replicas {
	return &replicas{urls: urls, tls: tc, lookup: net.DefaultResolver.LookupHost, pool: map[string]*endpoint{}}
}

// resolve rebuilds the list: each URL in order, a host name that resolves
// to several addresses expanded into one endpoint per address. The
// endpoint in use stays current when it is still listed.
func (r *replicas) resolve(ctx context.Context) {
	var prev *endpoint
	if len(r.list) > 0 {
		prev = r.list[r.cur]
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	var list []*endpoint
	for _, base := range r.urls {
		u, _ := url.Parse(base) // checked by SplitURLs
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = "443"
			if u.Scheme == "http" {
				port = "80"
			}
		}
		var addrs []string
		if net.ParseIP(host) == nil {
			addrs, _ = r.lookup(ctx, host) // on failure the dial reports it
		}
		if len(addrs) < 2 {
			list = append(list, r.endpoint(base, ""))
			continue
		}
		for _, a := range addrs {
			list = append(list, r.endpoint(base, net.JoinHostPort(a, port)))
		}
	}
	keep := map[*endpoint]bool{}
	r.list, r.cur = list, 0
	for i, e := range list {
		keep[e] = true
		if e == prev {
			r.cur = i
		}
	}
	for k, e := range r.pool {
		if !keep[e] {
			e.hc.CloseIdleConnections()
			delete(r.pool, k)
		}
	}
}

func (r *replicas) endpoint(base, dial string) *endpoint {
	key := base + "|" + dial
	if e := r.pool[key]; e != nil {
		return e
	}
	// TCP keepalive probes are answered by the replica's kernel, not by
	// the process, so a busy replica passes them; a replica whose host
	// vanished without a reset (power loss, partition) fails them, and its
	// open watch ends in about 4 s instead of at the watch's own timeout.
	d := &net.Dialer{Timeout: dialTimeout, KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 2 * time.Second, Interval: time.Second, Count: 2}}
	tr := &http.Transport{MaxIdleConnsPerHost: 2, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if dial != "" {
				addr = dial
			}
			return d.DialContext(ctx, network, addr)
		}}
	if r.tls != nil {
		// A copy: a transport may change its config's NextProtos, which
		// must not leak into other transports sharing it.
		tr.TLSClientConfig = r.tls.Clone()
	}
	e := &endpoint{base: base, dial: dial, hc: &http.Client{Transport: tr}}
	r.pool[key] = e
	return e
}

// current is the endpoint in use.
func (r *replicas) current() *endpoint { return r.list[r.cur] }

// next moves to the following endpoint.
func (r *replicas) next() { r.cur = (r.cur + 1) % len(r.list) }

func (r *replicas) close() {
	for _, e := range r.pool {
		e.hc.CloseIdleConnections()
	}
}

// moduleURL maps a module URL that names any replica onto the one in use,
// so a snapshot compiled by one replica loads while another answers.
func (r *replicas) moduleURL(u string) (string, bool) {
	cur := r.current().base
	for _, base := range append([]string{cur}, r.urls...) {
		if rest, ok := strings.CutPrefix(u, base+"/"); ok {
			return cur + "/" + rest, true
		}
	}
	return "", false
}
