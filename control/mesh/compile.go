package mesh

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/weftmesh/weft/proxy/config"
)

// LocalAppCluster is the cluster an inbound listener forwards to.
const LocalAppCluster = "local_app"

// NodeConfig is one sidecar's compiled configuration.
type NodeConfig struct {
	// Node is the node id (the Sidecar's name).
	Node string
	// Service is the fronted service as "NAMESPACE/NAME", or "".
	Service string
	// Config has defaults applied and no Version: the store versions it.
	Config *config.Config
	// Content is Config as JSON without a version (see Stamp); equal
	// Content means an equal config.
	Content []byte
}

// Stamp returns content (a NodeConfig's) with its version set: the config
// as a sidecar reads it (config.ParseJSON; JSON is YAML too, so
// config.Parse reads it the same). Version is the first field of a config,
// so stamping is a splice rather than a second encoding.
func Stamp(content []byte, version string) []byte {
	v, _ := json.Marshal(version)
	out := make([]byte, 0, len(content)+len(v)+12)
	out = append(out, `{"version":`...)
	out = append(out, v...)
	if rest := bytes.TrimPrefix(content, []byte("{")); len(bytes.TrimSpace(rest)) > 0 && rest[0] != '}' {
		out = append(out, ',')
		out = append(out, rest...)
	} else {
		out = append(out, '}')
	}
	return out
}

// Compile validates m as a whole and compiles one config per Sidecar. Each
// config is validated as the sidecar will validate it (config.Validate,
// after the same defaults); a problem is reported against the Sidecar it
// was compiled for. Sidecars compile in parallel, on up to GOMAXPROCS
// goroutines: each reads the mesh and writes only its own config.
func Compile(m *Mesh, o Options) (map[string]*NodeConfig, error) {
	if err := Validate(m, o); err != nil {
		return nil, err
	}
	// Errors are reported in Sidecar order, as they would be one by one.
	todo := m.List(KindSidecar)
	results := make([]*NodeConfig, len(todo))
	nodeErrs := make([]Errors, len(todo))
	owner := map[string]Key{}
	// Sidecars of one shape compile to one config but for the node id:
	// the first (the leader) is compiled, the others copy it.
	leaderOf := make([]int, len(todo))
	shapes := map[string]int{}
	byName := filtersByNode(m)
	for i, r := range todo {
		leaderOf[i] = i
		if other, dup := owner[r.Name]; dup {
			nodeErrs[i] = Errors{{Key: r.Key(), Field: "name", Reason: fmt.Sprintf("node id %q is also %s; node ids are unique across namespaces", r.Name, other), File: r.File, Line: r.Line}}
			continue
		}
		owner[r.Name] = r.Key()
		k := shapeKey(r, byName[r.Name])
		if l, ok := shapes[k]; ok {
			leaderOf[i] = l
		} else {
			shapes[k] = i
		}
	}
	shared := make([]bool, len(todo)) // a leader with followers
	for i, l := range leaderOf {
		if l != i {
			shared[l] = true
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(todo) {
					return
				}
				switch {
				case nodeErrs[i] != nil || leaderOf[i] != i:
				case shared[i]:
					// The shape's template, named by the placeholder.
					results[i], nodeErrs[i] = compileNode(m, o, todo[i], nodePlaceholder)
				default:
					results[i], nodeErrs[i] = compileNode(m, o, todo[i], todo[i].Name)
				}
			}
		}()
	}
	wg.Wait()
	templates := map[int]*NodeConfig{}
	for i := range todo {
		if shared[i] {
			templates[i] = results[i]
		}
	}
	for i, r := range todo {
		l := leaderOf[i]
		if !shared[l] || (l != i && nodeErrs[i] != nil) {
			continue
		}
		if templates[l] == nil {
			// The template failed: compile each for its own errors.
			results[i], nodeErrs[i] = compileNode(m, o, r, r.Name)
			continue
		}
		results[i] = templates[l].forNode(r.Name)
	}
	var errs Errors
	out := make(map[string]*NodeConfig, len(todo))
	for i, r := range todo {
		errs = append(errs, nodeErrs[i]...)
		if results[i] != nil {
			out[r.Name] = results[i]
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// filtersByNode lists, per node id, the Filters whose apply names it.
func filtersByNode(m *Mesh) map[string][]string {
	out := map[string][]string{}
	for _, r := range m.List(KindFilter) {
		if a := r.Filter().Apply; a != nil {
			for _, node := range a.Nodes {
				out[node] = append(out[node], r.Key().String())
			}
		}
	}
	return out
}

// shapeKey is what a Sidecar's compiled config depends on besides the
// rest of the mesh and its node id: its namespace, its spec, and the
// Filters that pick it by name. (The node id appears in the config only
// as node.id; config validation does not look at it.)
func shapeKey(r *Resource, filters []string) string {
	spec, err := json.Marshal(r.Sidecar())
	if err != nil {
		return "\x00unique:" + r.Key().String() // never shared
	}
	return r.Namespace + "\x00" + string(spec) + "\x00" + strings.Join(filters, ",")
}

// nodePlaceholder names a shape's template: a node id no Sidecar has (a
// NUL cannot be in a resource name) and no other string in a compiled
// config holds, so every place the node id reaches — node.id, and the
// defaults derived from it, such as tracing.service_name — can be found
// and replaced in the encoded config.
var nodePlaceholder = func() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "\x00weft-node-" + hex.EncodeToString(b[:]) + "\x00"
}()

// forNode is a shape's template (compiled for nodePlaceholder) made into
// node name's config: the config shared but for the fields the node id
// reaches, the content with every encoded placeholder replaced.
func (nc *NodeConfig) forNode(name string) *NodeConfig {
	cfg := *nc.Config
	cfg.Node.ID = name
	if cfg.Tracing.ServiceName == nodePlaceholder {
		cfg.Tracing.ServiceName = name
	}
	ph, _ := json.Marshal(nodePlaceholder)
	id, _ := json.Marshal(name)
	return &NodeConfig{Node: name, Service: nc.Service, Config: &cfg, Content: bytes.ReplaceAll(nc.Content, ph, id)}
}

// compileNode compiles, encodes and validates one Sidecar's config.
// id is the node id written in the config (r.Name, or nodePlaceholder for
// a shape's template).
func compileNode(m *Mesh, o Options, r *Resource, id string) (*NodeConfig, Errors) {
	var errs Errors
	fail := func(field, format string, args ...any) {
		errs = append(errs, Error{Key: r.Key(), Field: field, Reason: fmt.Sprintf(format, args...), File: r.File, Line: r.Line})
	}
	nc := &nodeCompiler{m: m, o: o, r: r, id: id, s: r.Sidecar(), clusters: map[string]bool{}, filters: map[string]bool{}}
	cfg, err := nc.compile()
	if err != nil {
		fail("", "%v", err)
		return nil, errs
	}
	cfg.ApplyDefaults()
	content, err := json.Marshal(cfg)
	if err != nil {
		fail("", "encoding the compiled config: %v", err)
		return nil, errs
	}
	// The sidecar decodes content to this very config (encoding/json
	// round-trips its own output), then validates it: so does this, without
	// decoding again.
	if err := config.Validate("node "+r.Name, content, cfg); err != nil {
		var ces config.Errors
		if errors.As(err, &ces) {
			for _, ce := range ces {
				fail("compiled config: "+ce.Path, "%s", ce.Reason)
			}
		} else {
			fail("compiled config", "%v", err)
		}
		return nil, errs
	}
	svc := ""
	if nc.s.Service != "" {
		k := ServiceRef(r.Namespace, nc.s.Service)
		svc = k.Namespace + "/" + k.Name
	}
	return &NodeConfig{Node: id, Service: svc, Config: cfg, Content: content}, nil
}

type nodeCompiler struct {
	m        *Mesh
	o        Options
	r        *Resource
	id       string // the node id written in the config
	s        *SidecarSpec
	cfg      *config.Config
	clusters map[string]bool
	filters  map[string]bool
}

func (n *nodeCompiler) compile() (*config.Config, error) {
	n.cfg = &config.Config{
		Node:  config.Node{ID: n.id, Metadata: map[string]string{"namespace": n.r.Namespace}},
		Admin: config.Admin{Address: n.s.Admin},
	}
	var self Key
	if n.s.Service != "" {
		self = ServiceRef(n.r.Namespace, n.s.Service)
		n.cfg.Node.Cluster = self.Name
		n.cfg.Node.Metadata["service"] = self.Namespace + "/" + self.Name
	}

	// Outbound: one virtual host per service this sidecar may call.
	var reach []Key
	if len(n.s.Egress) > 0 {
		seen := map[Key]bool{}
		for _, e := range n.s.Egress {
			k := ServiceRef(n.r.Namespace, e)
			if !seen[k] {
				seen[k] = true
				reach = append(reach, k)
			}
		}
		sort.Slice(reach, func(i, j int) bool { return reach[i].Less(reach[j]) })
	} else {
		for _, r := range n.m.List(KindService) {
			reach = append(reach, r.Key())
		}
	}
	rules := map[Key]*Resource{}
	for _, r := range n.m.List(KindTrafficRule) {
		rules[ServiceRef(r.Namespace, r.TrafficRule().Service)] = r
	}
	out := config.Listener{Name: "outbound", Address: n.s.Outbound, Direction: "outbound", Metadata: cloneMetadata(n.s.Metadata)}
	out.Filters = n.listenerFilters("outbound", self)
	for _, k := range reach {
		vh, err := n.virtualHost(k, rules[k])
		if err != nil {
			return nil, err
		}
		out.VirtualHosts = append(out.VirtualHosts, vh)
	}
	out.VirtualHosts = append(out.VirtualHosts, config.VirtualHost{
		Name:    "unknown-host",
		Domains: []string{"*"},
		Routes: []config.Route{{
			Name:           "unknown-host",
			Match:          Match{Prefix: "/"},
			DirectResponse: &config.DirectResponse{Status: 404, Body: "weft: no mesh service for this host\n"},
		}},
	})
	n.cfg.Listeners = append(n.cfg.Listeners, out)

	if n.s.Inbound != "" {
		in := config.Listener{Name: "inbound", Address: n.s.Inbound, Direction: "inbound", Metadata: cloneMetadata(n.s.Metadata)}
		in.Filters = n.listenerFilters("inbound", self)
		n.secureInbound(&in, self)
		in.VirtualHosts = []config.VirtualHost{{
			Name:    "local-app",
			Domains: []string{"*"},
			Routes:  []config.Route{{Name: "local-app", Match: Match{Prefix: "/"}, Route: &config.RouteAction{Cluster: LocalAppCluster}}},
		}}
		n.cfg.Listeners = append(n.cfg.Listeners, in)
		n.cfg.Clusters = append(n.cfg.Clusters, config.Cluster{Name: LocalAppCluster, Endpoints: []config.Endpoint{{Address: n.s.App}}})
	}
	n.wasmServices(self)
	sort.SliceStable(n.cfg.Clusters, func(i, j int) bool { return n.cfg.Clusters[i].Name < n.cfg.Clusters[j].Name })
	sort.SliceStable(n.cfg.Filters, func(i, j int) bool { return n.cfg.Filters[i].Name < n.cfg.Filters[j].Name })
	return n.cfg, nil
}

// listenerFilters declares and names the filters whose selector picks this
// sidecar for the given direction, in (order, namespace, name) order.
func (n *nodeCompiler) listenerFilters(direction string, self Key) []string {
	var picked []*Resource
	for _, r := range n.m.List(KindFilter) {
		a := r.Filter().Apply
		if a == nil || r.Filter().Singleton {
			continue
		}
		d := a.Direction
		if d == "" {
			d = "outbound"
		}
		if d != "both" && d != direction {
			continue
		}
		if n.picks(r, self) {
			picked = append(picked, r)
		}
	}
	sort.SliceStable(picked, func(i, j int) bool { return picked[i].Filter().Order < picked[j].Filter().Order })
	var names []string
	for _, r := range picked {
		names = append(names, n.declareFilter(filterName(r.Key()), r.Filter(), ""))
	}
	return names
}

// picks reports whether filter r's apply selector picks this sidecar
// (whatever the direction).
func (n *nodeCompiler) picks(r *Resource, self Key) bool {
	a := r.Filter().Apply
	if a == nil {
		return false
	}
	ok := a.All
	for _, node := range a.Nodes {
		ok = ok || node == n.r.Name
	}
	for _, s := range a.Services {
		ok = ok || (self != Key{} && ServiceRef(r.Namespace, s) == self)
	}
	return ok
}

// wasmServices declares the singleton filters whose selector picks this
// sidecar as its wasm_services, in (order, namespace, name) order.
func (n *nodeCompiler) wasmServices(self Key) {
	var picked []*Resource
	for _, r := range n.m.List(KindFilter) {
		if r.Filter().Singleton && n.picks(r, self) {
			picked = append(picked, r)
		}
	}
	sort.SliceStable(picked, func(i, j int) bool { return picked[i].Filter().Order < picked[j].Filter().Order })
	for _, r := range picked {
		n.cfg.WasmServices = append(n.cfg.WasmServices, n.proxyFilter(filterName(r.Key()), r.Filter()))
	}
}

// addStatsTags adds tags to the sidecar's stats_tags, each rule once.
func (n *nodeCompiler) addStatsTags(tags []config.StatsTag) {
	for _, t := range tags {
		if !slices.Contains(n.cfg.StatsTags, t) {
			n.cfg.StatsTags = append(n.cfg.StatsTags, t)
		}
	}
}

// declareFilter adds a proxy filter for spec (with cfgOverride as its
// plugin config when set) once, and returns its name.
func (n *nodeCompiler) declareFilter(name string, f *FilterSpec, cfgOverride string) string {
	if n.filters[name] {
		return name
	}
	n.filters[name] = true
	fc := n.proxyFilter(name, f)
	if cfgOverride != "" {
		fc.Config = config.RawConfig(cfgOverride)
	}
	n.cfg.Filters = append(n.cfg.Filters, fc)
	return name
}

// proxyFilter is the sidecar's filter (or wasm service) for f; the
// sidecar takes f's stats_tags too.
func (n *nodeCompiler) proxyFilter(name string, f *FilterSpec) config.Filter {
	n.addStatsTags(f.StatsTags)
	sha := normalDigest(f.Module.SHA256)
	url := ""
	if n.o.ModuleURL != nil {
		url = n.o.ModuleURL(sha)
	}
	fc := config.Filter{
		Name:            name,
		Module:          config.Module{URL: url, SHA256: sha},
		RootID:          f.RootID,
		VMID:            f.VMID,
		VMConfig:        f.VMConfig,
		Config:          f.Config,
		FailurePolicy:   f.FailurePolicy,
		PoolSize:        f.PoolSize,
		MemoryLimitMiB:  f.MemoryLimitMiB,
		CallbackTimeout: f.CallbackTimeout,
		IsolateVM:       f.IsolateVM,
		LogLevel:        f.LogLevel,
	}
	if f.PluginName != nil {
		name := *f.PluginName
		fc.PluginName = &name
	}
	return fc
}

// cloneMetadata is a deep copy of m (nil stays nil), so compiled configs
// share nothing with the mesh.
func cloneMetadata(m *config.Metadata) *config.Metadata {
	return mergeMetadata(nil, m)
}

// mergeMetadata is base with over's keys laid over it, namespace by
// namespace (nil when both are nil); values are deep copies.
func mergeMetadata(base, over *config.Metadata) *config.Metadata {
	if base == nil && over == nil {
		return nil
	}
	out := &config.Metadata{FilterMetadata: map[string]map[string]any{}}
	for _, m := range []*config.Metadata{base, over} {
		if m == nil {
			continue
		}
		for ns, vals := range m.FilterMetadata {
			if out.FilterMetadata[ns] == nil {
				out.FilterMetadata[ns] = map[string]any{}
			}
			for k, v := range vals {
				out.FilterMetadata[ns][k] = deepCopy(v)
			}
		}
	}
	return out
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case []any:
		c := make([]any, len(x))
		for i, e := range x {
			c[i] = deepCopy(e)
		}
		return c
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, e := range x {
			c[k] = deepCopy(e)
		}
		return c
	}
	return v
}

func normalDigest(s string) string {
	if len(s) > 7 && s[:7] == "sha256:" {
		s = s[7:]
	}
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'F' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// instances are the endpoints (or DNS) of a whole service (version "")
// or of one version.
func (n *nodeCompiler) instances(k Key, version string) ([]Endpoint, *config.DNS) {
	svc := n.m.Get(k).Service()
	if version != "" {
		for _, v := range svc.Versions {
			if v.Name == version {
				return v.Endpoints, v.DNS
			}
		}
		return nil, nil
	}
	if svc.DNS != nil {
		return nil, svc.DNS
	}
	var eps []Endpoint
	seen := map[string]bool{}
	for _, list := range append([][]Endpoint{svc.Endpoints}, versionEndpoints(svc)...) {
		for _, e := range list {
			if !seen[e.Address] {
				seen[e.Address] = true
				eps = append(eps, e)
			}
		}
	}
	return eps, nil
}

func versionEndpoints(svc *ServiceSpec) [][]Endpoint {
	out := make([][]Endpoint, len(svc.Versions))
	for i, v := range svc.Versions {
		out[i] = v.Endpoints
	}
	return out
}

// targets declares the clusters that carry traffic to service k (version
// "" is the whole service) and returns them with their shares of it. With
// mesh mTLS, an endpoint fronted by a sidecar is reached over mTLS and one
// without over plaintext; a proxy cluster has one transport, so a set
// mixing both compiles to two clusters, CLUSTER~mtls and CLUSTER~plain,
// shared by endpoint weight. Otherwise there is one cluster, share 1.
func (n *nodeCompiler) targets(k Key, version string) []config.WeightedCluster {
	name := ClusterName(k)
	if version != "" {
		name = VersionClusterName(k, version)
	}
	eps, dns := n.instances(k, version)
	secure := n.o.TrustDomain != "" && n.mtlsMode(k) != "disabled"
	if dns != nil || !secure {
		// Behind a DNS name the instances are not known one by one: they
		// are sidecars when the service has sidecars with an inbound.
		n.declareCluster(k, version, name, eps, dns, secure && dns != nil && len(n.frontIDs(k, true)) > 0)
		return []config.WeightedCluster{{Cluster: name, Weight: 1}}
	}
	var withSidecar, plain []Endpoint
	for _, e := range eps {
		if n.sidecarAt(k, e) {
			withSidecar = append(withSidecar, e)
		} else {
			plain = append(plain, e)
		}
	}
	if len(plain) == 0 || len(withSidecar) == 0 {
		n.declareCluster(k, version, name, eps, nil, len(plain) == 0)
		return []config.WeightedCluster{{Cluster: name, Weight: 1}}
	}
	n.declareCluster(k, version, name+MTLSPart, withSidecar, nil, true)
	n.declareCluster(k, version, name+PlainPart, plain, nil, false)
	return []config.WeightedCluster{{Cluster: name + MTLSPart, Weight: weightOf(withSidecar)}, {Cluster: name + PlainPart, Weight: weightOf(plain)}}
}

// Suffixes of the two halves of a cluster whose endpoints are partly
// fronted by sidecars (see targets).
const (
	MTLSPart  = "~mtls"
	PlainPart = "~plain"
)

func weightOf(eps []Endpoint) int {
	w := 0
	for _, e := range eps {
		w += max(e.Weight, 1)
	}
	return w
}

// sidecarAt reports whether a sidecar fronts endpoint e of service k: as
// the endpoint declares, else when a Sidecar resource fronting k listens
// (inbound) at its address, or at its port on a wildcard host.
func (n *nodeCompiler) sidecarAt(k Key, e Endpoint) bool { return sidecarAt(n.m, k, e) }

func sidecarAt(m *Mesh, k Key, e Endpoint) bool {
	if e.Sidecar != nil {
		return *e.Sidecar
	}
	host, port, err := net.SplitHostPort(e.Address)
	if err != nil {
		return false
	}
	for _, r := range m.List(KindSidecar) {
		s := r.Sidecar()
		if s.Service == "" || s.Inbound == "" || ServiceRef(r.Namespace, s.Service) != k {
			continue
		}
		ih, ip, err := net.SplitHostPort(s.Inbound)
		if err != nil || ip != port {
			continue
		}
		if ih == host || ih == "" || ih == "0.0.0.0" || ih == "::" {
			return true
		}
	}
	return false
}

// declareCluster adds a cluster of service k (of one version, or "" for
// the whole service) once.
func (n *nodeCompiler) declareCluster(k Key, version, name string, eps []Endpoint, dns *config.DNS, mtls bool) {
	if n.clusters[name] {
		return
	}
	n.clusters[name] = true
	svc := n.m.Get(k).Service()
	c := config.Cluster{Name: name, LB: svc.LB, ConnectTimeout: svc.ConnectTimeout, Metadata: cloneMetadata(svc.Metadata)}
	for _, v := range svc.Versions {
		if version != "" && v.Name == version {
			c.Metadata = mergeMetadata(svc.Metadata, v.Metadata)
		}
	}
	for _, e := range eps {
		c.Endpoints = append(c.Endpoints, config.Endpoint{Address: e.Address, Weight: e.Weight, Metadata: cloneMetadata(e.Metadata)})
	}
	if dns != nil {
		d := *dns
		c.DNS = &d
	}
	if mtls {
		ids := n.frontIDs(k, true)
		if len(ids) == 0 {
			ids = n.frontIDs(k, false)
		}
		if len(ids) == 0 {
			ids = []string{"spiffe://" + n.o.TrustDomain + "/ns/" + k.Namespace + "/sa/" + k.Name}
		}
		c.TLS = &config.ClusterTLS{Mode: "mtls", ServerIDs: ids}
	}
	n.cfg.Clusters = append(n.cfg.Clusters, c)
}

// routeTo points a route action at the given shares of versions (one
// share of 100 for a single target): a single cluster when it is one, else
// weighted clusters whose weights add up to 100 (largest remainder).
func (n *nodeCompiler) routeTo(a *config.RouteAction, k Key, split []Split) {
	type share struct {
		cluster string
		w       float64
	}
	var shares []share
	for _, sp := range split {
		parts := n.targets(k, sp.Version)
		total := 0
		for _, p := range parts {
			total += p.Weight
		}
		for _, p := range parts {
			shares = append(shares, share{p.Cluster, float64(sp.Weight) * float64(p.Weight) / float64(total)})
		}
	}
	if len(shares) == 1 {
		a.Cluster = shares[0].cluster
		return
	}
	left := 100
	rem := make([]float64, len(shares))
	for i, s := range shares {
		w := int(s.w)
		a.WeightedClusters = append(a.WeightedClusters, config.WeightedCluster{Cluster: s.cluster, Weight: w})
		left -= w
		rem[i] = s.w - float64(w)
	}
	for ; left > 0; left-- {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		a.WeightedClusters[best].Weight++
		rem[best] = -1
	}
}

// oneCluster is the cluster a mirror copies to: a mixed target's larger
// half.
func (n *nodeCompiler) oneCluster(k Key, version string) string {
	parts := n.targets(k, version)
	best := parts[0]
	for _, p := range parts[1:] {
		if p.Weight > best.Weight {
			best = p
		}
	}
	return best.Cluster
}

func domainsOf(k Key, own string, svc *ServiceSpec) []string {
	d := []string{}
	if k.Namespace == own {
		d = append(d, k.Name)
	}
	base := k.Name + "." + k.Namespace
	d = append(d, base, base+".svc", base+".svc.cluster.local")
	return append(d, svc.Hosts...)
}

func (n *nodeCompiler) virtualHost(k Key, rule *Resource) (config.VirtualHost, error) {
	svc := n.m.Get(k).Service()
	vh := config.VirtualHost{Name: ClusterName(k), Domains: domainsOf(k, n.r.Namespace, svc)}
	prefix := ClusterName(k) + "/"
	catchAll := false
	if rule != nil {
		t := rule.TrafficRule()
		for i, rr := range t.Routes {
			name := rr.Name
			if name == "" {
				name = "route-" + strconv.Itoa(i)
			}
			a := &config.RouteAction{Timeout: rr.Timeout}
			switch {
			case len(rr.Split) > 0:
				n.routeTo(a, k, rr.Split)
			default:
				n.routeTo(a, k, []Split{{Version: rr.Version, Weight: 100}})
			}
			if m := rr.Mirror; m != nil {
				mk := ServiceRef(rule.Namespace, m.Service)
				a.Mirror = &config.Mirror{Cluster: n.oneCluster(mk, m.Version), Percent: m.Percent}
			}
			if rr.Retry != nil {
				rp := *rr.Retry
				rp.On = append([]string(nil), rr.Retry.On...)
				rp.RetriableStatusCodes = append([]int(nil), rr.Retry.RetriableStatusCodes...)
				a.Retry = &rp
			}
			route := config.Route{Name: prefix + name, Match: rr.Match, Route: a, Metadata: cloneMetadata(rr.Metadata)}
			for _, f := range rr.Filters {
				fk := Key{Kind: KindFilter, Namespace: rule.Namespace, Name: f}
				route.Filters = append(route.Filters, n.declareFilter(filterName(fk), n.m.Get(fk).Filter(), ""))
			}
			if ft := rr.Fault; ft != nil {
				fk := Key{Kind: KindFilter, Namespace: rule.Namespace, Name: ft.Filter}
				b, err := json.Marshal(struct {
					Delay   *FaultDelay   `json:"delay,omitempty"`
					Abort   *FaultAbort   `json:"abort,omitempty"`
					Headers []FaultHeader `json:"headers,omitempty"`
				}{ft.Delay, ft.Abort, ft.Headers})
				if err != nil {
					return vh, fmt.Errorf("TrafficRule %s/%s: routes[%d].fault: %w", rule.Namespace, rule.Name, i, err)
				}
				fname := fmt.Sprintf("fault.%s.%s.%s", rule.Name, rule.Namespace, name)
				route.Filters = append(route.Filters, n.declareFilter(fname, n.m.Get(fk).Filter(), string(b)))
			}
			vh.Routes = append(vh.Routes, route)
			if isCatchAll(rr.Match) {
				catchAll = true
				break // later routes are never reached
			}
		}
	}
	if !catchAll {
		a := &config.RouteAction{}
		n.routeTo(a, k, []Split{{Weight: 100}})
		vh.Routes = append(vh.Routes, config.Route{Name: prefix + "default", Match: Match{Prefix: "/"}, Route: a})
	}
	return vh, nil
}

func isCatchAll(m Match) bool {
	return (m.Prefix == "" || m.Prefix == "/") && m.Path == "" && m.Regex == "" &&
		len(m.Methods) == 0 && len(m.Headers) == 0 && len(m.Query) == 0 && len(m.Cookies) == 0
}
