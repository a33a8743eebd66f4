package route

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// Table is one listener's compiled routes. It is immutable and safe for
// concurrent use.
type Table struct {
	// exact maps lower-case exact domains ("api.local", "api.local:8080").
	exact map[string]*virtualHost
	// portDomains is set when some exact domain names a port, so the full
	// Host is tried before the Host without its port.
	portDomains bool
	// suffix holds "*.x" patterns as ".x", longest first; prefix holds
	// "x.*" patterns as "x.", longest first.
	suffix []wildcard
	prefix []wildcard
	// any is the "*" virtual host, or nil.
	any *virtualHost
	// all lists the virtual hosts in config order.
	all []*virtualHost
}

type virtualHost struct {
	name   string
	routes []Route
}

type wildcard struct {
	part []byte
	vh   *virtualHost
}

// Compile builds one listener's route table. clusterIndex maps cluster names
// to indexes into the snapshot's cluster slice (so no string map lookups per
// request); route filter names are copied into Route.Filters for the caller
// to resolve. Compile does not change l. It expects a validated config but
// re-checks what it depends on, and applies the route defaults itself
// (timeout, retry policy, mirror percent, redirect status) so an undefaulted
// config compiles the same.
func Compile(l config.Listener, clusterIndex map[string]int) (*Table, error) {
	t := &Table{exact: map[string]*virtualHost{}}
	for i := range l.VirtualHosts {
		cv := &l.VirtualHosts[i]
		vh := &virtualHost{name: cv.Name, routes: make([]Route, len(cv.Routes))}
		for j := range cv.Routes {
			if err := compileRoute(&vh.routes[j], cv.Name, j, &cv.Routes[j], clusterIndex); err != nil {
				return nil, fmt.Errorf("listener %q: virtual host %q: %w", l.Name, cv.Name, err)
			}
		}
		for _, d := range cv.Domains {
			if err := t.addDomain(d, vh); err != nil {
				return nil, fmt.Errorf("listener %q: virtual host %q: %w", l.Name, cv.Name, err)
			}
		}
		t.all = append(t.all, vh)
	}
	// Longest wildcard first: "*.api.local" beats "*.local".
	sort.SliceStable(t.suffix, func(i, j int) bool { return len(t.suffix[i].part) > len(t.suffix[j].part) })
	sort.SliceStable(t.prefix, func(i, j int) bool { return len(t.prefix[i].part) > len(t.prefix[j].part) })
	return t, nil
}

func (t *Table) addDomain(d string, vh *virtualHost) error {
	d = strings.ToLower(d)
	dup := func() error { return fmt.Errorf("domain %q: already used by virtual host %q", d, t.owner(d).name) }
	switch {
	case d == "*":
		if t.any != nil {
			return dup()
		}
		t.any = vh
	case strings.Count(d, "*") > 1:
		return fmt.Errorf("domain %q: more than one wildcard", d)
	case strings.HasPrefix(d, "*") && len(d) > 1:
		if t.owner(d) != nil {
			return dup()
		}
		t.suffix = append(t.suffix, wildcard{part: []byte(d[1:]), vh: vh})
	case strings.HasSuffix(d, "*") && len(d) > 1:
		if t.owner(d) != nil {
			return dup()
		}
		t.prefix = append(t.prefix, wildcard{part: []byte(d[:len(d)-1]), vh: vh})
	case strings.Contains(d, "*"):
		return fmt.Errorf("domain %q: a wildcard must be at the start or the end", d)
	case d == "":
		return fmt.Errorf("empty domain")
	default:
		if t.exact[d] != nil {
			return dup()
		}
		t.exact[d] = vh
		if string(stripPort([]byte(d))) != d {
			t.portDomains = true
		}
	}
	return nil
}

// owner returns the virtual host that already has domain d, or nil.
func (t *Table) owner(d string) *virtualHost {
	switch {
	case d == "*":
		return t.any
	case strings.HasPrefix(d, "*"):
		for _, w := range t.suffix {
			if string(w.part) == d[1:] {
				return w.vh
			}
		}
	case strings.HasSuffix(d, "*"):
		for _, w := range t.prefix {
			if string(w.part) == d[:len(d)-1] {
				return w.vh
			}
		}
	default:
		return t.exact[d]
	}
	return nil
}

// Routes returns every route of the table, virtual host by virtual host in
// config order, for the caller to resolve filters or list them. The
// pointers are the ones Match returns.
func (t *Table) Routes() []*Route {
	var rs []*Route
	for _, vh := range t.all {
		for i := range vh.routes {
			rs = append(rs, &vh.routes[i])
		}
	}
	return rs
}

// maxHostLen bounds the host Match lower-cases on the stack; a longer Host
// (longer than any DNS name) is lower-cased on the heap.
const maxHostLen = 256

// Match picks the route for req: the virtual host by Host (exact domain,
// then the longest suffix wildcard "*.x", then the longest prefix wildcard
// "x.*", then "*"; case-insensitive, a port ignored unless an exact domain
// names one), then the first of its routes, in order, whose path, methods,
// headers, query parameters and cookies all match. It returns nil when no
// route matches (the proxy answers 404). It does not allocate.
func (t *Table) Match(req *fasthttp.Request) *Route {
	vh := t.virtualHost(req)
	if vh == nil {
		return nil
	}
	uri := req.URI()
	path := uri.Path()
	method := req.Header.Method()
	for i := range vh.routes {
		r := &vh.routes[i]
		if r.match.matches(req, uri, path, method) {
			return r
		}
	}
	return nil
}

func (t *Table) virtualHost(req *fasthttp.Request) *virtualHost {
	h := req.Header.Host()
	if len(h) == 0 {
		h = req.URI().Host()
	}
	if hasUpper(h) {
		var buf [maxHostLen]byte
		return t.lookupHost(toLower(buf[:0], h))
	}
	return t.lookupHost(h)
}

func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// toLower appends b to dst in lower case.
func toLower(dst, b []byte) []byte {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// lookupHost finds the virtual host for a lower-case Host: exact domains
// (with the port, when a domain names one; then without), then suffix
// wildcards, then prefix wildcards, then "*". Only digits after the last
// colon are a port, so, as in Envoy, "*-canary" takes
// "localhost:8000-canary".
func (t *Table) lookupHost(lh []byte) *virtualHost {
	if t.portDomains {
		if vh := t.exact[string(lh)]; vh != nil {
			return vh
		}
	}
	lh = stripPort(lh)
	if n := len(lh); n > 1 && lh[n-1] == '.' {
		lh = lh[:n-1] // "api.local." is "api.local"
	}
	if vh := t.exact[string(lh)]; vh != nil {
		return vh
	}
	for _, w := range t.suffix {
		if len(lh) > len(w.part) && bytes.HasSuffix(lh, w.part) {
			return w.vh
		}
	}
	for _, w := range t.prefix {
		if len(lh) > len(w.part) && bytes.HasPrefix(lh, w.part) {
			return w.vh
		}
	}
	return t.any
}

// stripPort drops a ":port" from a host: "a.local:80" → "a.local",
// "[::1]:80" → "[::1]"; "[::1]", a bare "::1" and a ":" followed by
// anything but digits are left alone.
func stripPort(h []byte) []byte {
	i := bytes.LastIndexByte(h, ':')
	if i < 0 {
		return h
	}
	if h[0] == '[' {
		if i > 0 && h[i-1] == ']' {
			return h[:i]
		}
		return h
	}
	if bytes.IndexByte(h[:i], ':') >= 0 {
		return h
	}
	for _, c := range h[i+1:] { // "host:8000-canary" has no port
		if c < '0' || c > '9' {
			return h
		}
	}
	return h[:i]
}
