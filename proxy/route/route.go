package route

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// Kind is what a route does with a request it matches.
type Kind uint8

const (
	// Forward sends the request to a cluster.
	Forward Kind = iota
	// Redirect answers with a 3xx and a Location.
	Redirect
	// Direct answers locally with a fixed status and body.
	Direct
)

// String names the kind as the config does.
func (k Kind) String() string {
	switch k {
	case Forward:
		return "route"
	case Redirect:
		return "redirect"
	case Direct:
		return "direct_response"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Target is one cluster a route forwards to.
type Target struct {
	// Name is the cluster's name.
	Name string
	// Index is the cluster's index in the snapshot's cluster slice.
	Index int
	// Weight is the cluster's share of the split (100 for a single cluster).
	Weight int
}

// MirrorTarget is the cluster a route copies a share of its requests to.
type MirrorTarget struct {
	// Name is the shadow cluster's name.
	Name string
	// Index is the shadow cluster's index in the snapshot's cluster slice.
	Index int
	// Percent is the share of requests copied, 0–100.
	Percent float64
	// below: a request is mirrored when its random number is below this;
	// all is set for 100%.
	below uint64
	all   bool
}

// Sample reports whether to mirror the request given a uniform random
// number r.
func (m *MirrorTarget) Sample(r uint64) bool { return m.all || r < m.below }

// Route is one compiled route: what to do with a request it matched. It is
// immutable; the methods only read it.
type Route struct {
	// Name is the route's config name, or "#N" (its index in the virtual
	// host) when it has none.
	Name string
	// VirtualHost is the name of the virtual host holding the route.
	VirtualHost string
	// Kind is Forward, Redirect or Direct.
	Kind Kind

	// Clusters are the targets of a Forward route (one, or a weighted
	// split); PickCluster chooses one.
	Clusters []Target
	// Mirror is the shadow cluster, or nil.
	Mirror *MirrorTarget
	// Timeout bounds the whole request, retries included.
	Timeout time.Duration
	// PerTryTimeout bounds one try; 0 means only Timeout applies.
	PerTryTimeout time.Duration
	// Retry is the route's retry policy with defaults applied, or nil for
	// no retries.
	Retry *config.RetryPolicy
	// Filters are the route's plugin names, run after the listener's; the
	// caller resolves them.
	Filters []string
	// Metadata is the route's filter_metadata (nil: none).
	Metadata map[string]map[string]any

	// Status is the status WriteRedirect or WriteDirect answers with.
	Status int

	match matcher
	cum   []uint64 // cumulative weights of Clusters
	total uint64

	prefixRewrite []byte
	pathRewrite   []byte
	hostRewrite   string
	reqHeaders    headerMutation
	respHeaders   headerMutation

	redirectScheme string
	redirectHost   string
	redirectPath   []byte
	body           []byte
}

// headerMutation is a compiled config.HeaderMutation.
type headerMutation struct {
	remove []string
	set    []config.Header
	add    []config.Header
}

func compileRoute(r *Route, vhost string, idx int, cr *config.Route, clusterIndex map[string]int) (err error) {
	r.Name = cr.Name
	if r.Name == "" {
		r.Name = fmt.Sprintf("#%d", idx)
	}
	r.VirtualHost = vhost
	defer func() {
		if err != nil {
			err = fmt.Errorf("route %q: %w", r.Name, err)
		}
	}()
	if r.match, err = compileMatch(&cr.Match); err != nil {
		return err
	}
	r.reqHeaders = compileMutation(&cr.RequestHeaders)
	r.respHeaders = compileMutation(&cr.ResponseHeaders)
	r.Filters = append([]string(nil), cr.Filters...)
	if cr.Metadata != nil {
		r.Metadata = cr.Metadata.FilterMetadata
	}

	switch {
	case cr.Route != nil && cr.Redirect == nil && cr.DirectResponse == nil:
		r.Kind = Forward
		return r.compileForward(cr.Route, clusterIndex)
	case cr.Redirect != nil && cr.Route == nil && cr.DirectResponse == nil:
		r.Kind = Redirect
		rd := cr.Redirect
		r.Status = rd.StatusCode
		if r.Status == 0 {
			r.Status = config.DefaultRedirectStatus
		}
		r.redirectScheme, r.redirectHost = rd.Scheme, rd.Host
		if rd.Path != "" {
			r.redirectPath = []byte(rd.Path)
		}
		return nil
	case cr.DirectResponse != nil && cr.Route == nil && cr.Redirect == nil:
		r.Kind = Direct
		r.Status = cr.DirectResponse.Status
		if r.Status < 100 || r.Status > 599 {
			return fmt.Errorf("direct_response: status %d is not between 100 and 599", r.Status)
		}
		if cr.DirectResponse.Body != "" {
			r.body = []byte(cr.DirectResponse.Body)
		}
		return nil
	}
	return fmt.Errorf("set exactly one of route, redirect, direct_response")
}

func (r *Route) compileForward(a *config.RouteAction, clusterIndex map[string]int) error {
	index := func(name string) (int, error) {
		i, ok := clusterIndex[name]
		if !ok {
			return 0, fmt.Errorf("cluster %q is not in the snapshot", name)
		}
		return i, nil
	}
	switch {
	case a.Cluster != "" && len(a.WeightedClusters) == 0:
		i, err := index(a.Cluster)
		if err != nil {
			return err
		}
		r.Clusters = []Target{{Name: a.Cluster, Index: i, Weight: 100}}
	case a.Cluster == "" && len(a.WeightedClusters) > 0:
		for _, w := range a.WeightedClusters {
			i, err := index(w.Cluster)
			if err != nil {
				return err
			}
			if w.Weight < 0 {
				return fmt.Errorf("cluster %q: weight must not be negative, got %d", w.Cluster, w.Weight)
			}
			r.Clusters = append(r.Clusters, Target{Name: w.Cluster, Index: i, Weight: w.Weight})
		}
	default:
		return fmt.Errorf("set cluster or weighted_clusters")
	}
	for _, t := range r.Clusters {
		r.total += uint64(t.Weight)
		r.cum = append(r.cum, r.total)
	}
	if m := a.Mirror; m != nil {
		i, err := index(m.Cluster)
		if err != nil {
			return fmt.Errorf("mirror: %w", err)
		}
		p := m.Percent
		if p == 0 {
			p = config.DefaultMirrorPercent
		}
		if math.IsNaN(p) || p < 0 || p > 100 {
			return fmt.Errorf("mirror: percent %v is not between 0 and 100", p)
		}
		r.Mirror = &MirrorTarget{Name: m.Cluster, Index: i, Percent: p, all: p >= 100}
		if !r.Mirror.all {
			r.Mirror.below = uint64(p / 100 * (1 << 63) * 2)
		}
	}
	r.Timeout = a.Timeout.D()
	if r.Timeout == 0 {
		r.Timeout = config.DefaultRouteTimeout
	}
	if a.Retry != nil {
		rp := *a.Retry
		rp.On = append([]string(nil), a.Retry.On...)
		rp.RetriableStatusCodes = append([]int(nil), a.Retry.RetriableStatusCodes...)
		rp.ApplyDefaults()
		r.Retry = &rp
		r.PerTryTimeout = rp.PerTryTimeout.D()
	}
	if a.PrefixRewrite != "" {
		if r.match.kind == pathRegex {
			return fmt.Errorf("prefix_rewrite needs a prefix or path match, not regex")
		}
		r.prefixRewrite = []byte(a.PrefixRewrite)
	}
	if a.PathRewrite != "" {
		if a.PrefixRewrite != "" {
			return fmt.Errorf("set prefix_rewrite or path_rewrite, not both")
		}
		r.pathRewrite = []byte(a.PathRewrite)
	}
	r.hostRewrite = a.HostRewrite
	return nil
}

func compileMutation(m *config.HeaderMutation) headerMutation {
	return headerMutation{
		remove: append([]string(nil), m.Remove...),
		set:    append([]config.Header(nil), m.Set...),
		add:    append([]config.Header(nil), m.Add...),
	}
}

// PickCluster chooses a target of a Forward route by weight, given a
// uniform random number r (e.g. from math/rand/v2). It returns nil for a
// route with no clusters. It does not allocate.
func (r *Route) PickCluster(rnd uint64) *Target {
	switch len(r.Clusters) {
	case 0:
		return nil
	case 1:
		return &r.Clusters[0]
	}
	// The high word of rnd×total is uniform in [0, total).
	x, _ := bits.Mul64(rnd, r.total)
	for i, c := range r.cum {
		if x < c {
			return &r.Clusters[i]
		}
	}
	return &r.Clusters[len(r.Clusters)-1]
}

// maxRewriteLen bounds what ApplyRequest and WriteRedirect build on the
// stack; longer paths cost an allocation.
const maxRewriteLen = 512

// ApplyRequest edits req for the upstream: the prefix rewrite (the matched
// prefix, or the whole path of an exact-path route, is replaced) or the
// path rewrite (the whole path), the host rewrite, then the request header
// mutation (remove, set, add). Call it after Match returned r for req.
func (r *Route) ApplyRequest(req *fasthttp.Request) {
	if len(r.prefixRewrite) > 0 {
		r.rewritePath(req.URI())
	}
	if len(r.pathRewrite) > 0 {
		req.URI().SetPathBytes(r.pathRewrite)
	}
	if r.hostRewrite != "" {
		req.URI().SetHost(r.hostRewrite)
		req.Header.SetHost(r.hostRewrite)
	}
	m := &r.reqHeaders
	for _, n := range m.remove {
		req.Header.Del(n)
	}
	for _, h := range m.set {
		req.Header.Set(h.Name, h.Value)
	}
	for _, h := range m.add {
		req.Header.Add(h.Name, h.Value)
	}
}

func (r *Route) rewritePath(uri *fasthttp.URI) {
	var buf [maxRewriteLen]byte
	var n int // length of the matched part of the raw path
	raw := uri.PathOriginal()
	switch r.match.kind {
	case pathPrefix:
		if !bytes.HasPrefix(raw, r.match.path) {
			r.rewriteDecoded(uri, buf[:0])
			return
		}
		n = len(r.match.path)
	case pathExact:
		n = len(raw)
	default:
		return
	}
	b := append(buf[:0], r.prefixRewrite...)
	b = append(b, raw[n:]...)
	uri.SetPathBytes(b)
}

// rewriteDecoded rewrites when the raw path spells the prefix with escapes
// ("/%6Frders" for "/orders"): it works on the decoded path and escapes
// what SetPathBytes would decode again.
func (r *Route) rewriteDecoded(uri *fasthttp.URI, b []byte) {
	path := uri.Path()
	if !bytes.HasPrefix(path, r.match.path) {
		return // a filter changed the path after Match
	}
	b = append(b, r.prefixRewrite...)
	for _, c := range path[len(r.match.path):] {
		switch c {
		case '%':
			b = append(b, "%25"...)
		case '?':
			b = append(b, "%3F"...)
		case '#':
			b = append(b, "%23"...)
		default:
			b = append(b, c)
		}
	}
	uri.SetPathBytes(b)
}

// ApplyResponse applies the response header mutation (remove, set, add) to
// resp, whatever produced it (upstream, redirect, direct response).
func (r *Route) ApplyResponse(resp *fasthttp.Response) {
	m := &r.respHeaders
	for _, n := range m.remove {
		resp.Header.Del(n)
	}
	for _, h := range m.set {
		resp.Header.Set(h.Name, h.Value)
	}
	for _, h := range m.add {
		resp.Header.Add(h.Name, h.Value)
	}
}

// WriteRedirect answers req with r's redirect: the status and a Location
// built from the request with the configured scheme, host and path swapped
// in. The query string is kept unless the configured path has one. When
// only the scheme changes, the port is dropped from the host. It does not
// apply the response header mutation; call ApplyResponse for that.
func (r *Route) WriteRedirect(req *fasthttp.Request, resp *fasthttp.Response) {
	var buf [maxRewriteLen]byte
	uri := req.URI()
	scheme := uri.Scheme()
	b := buf[:0]
	if r.redirectScheme != "" {
		b = append(b, r.redirectScheme...)
	} else {
		b = append(b, scheme...)
	}
	b = append(b, "://"...)
	switch {
	case r.redirectHost != "":
		b = append(b, r.redirectHost...)
	default:
		host := req.Header.Host()
		if len(host) == 0 {
			host = uri.Host()
		}
		if r.redirectScheme != "" && !strings.EqualFold(r.redirectScheme, string(scheme)) {
			host = stripPort(host)
		}
		b = append(b, host...)
	}
	switch {
	case r.redirectPath != nil:
		b = append(b, r.redirectPath...)
		if bytes.IndexByte(r.redirectPath, '?') >= 0 {
			break
		}
		if q := uri.QueryString(); len(q) > 0 {
			b = append(b, '?')
			b = append(b, q...)
		}
	default:
		b = append(b, uri.RequestURI()...)
	}
	resp.ResetBody()
	resp.SetStatusCode(r.Status)
	resp.Header.SetBytesV(fasthttp.HeaderLocation, b)
}

// WriteDirect answers with r's direct response: its status and body (as
// text/plain when there is one). It does not apply the response header
// mutation; call ApplyResponse for that.
func (r *Route) WriteDirect(resp *fasthttp.Response) {
	resp.SetStatusCode(r.Status)
	if len(r.body) == 0 {
		resp.ResetBody()
		return
	}
	resp.Header.SetContentType("text/plain; charset=utf-8")
	resp.SetBody(r.body)
}
