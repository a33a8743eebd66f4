package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"gopkg.in/yaml.v3"

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
	// Content is Config rendered without a version; equal Content means an
	// equal config.
	Content []byte
}

// Render sets cfg.Version and writes cfg as the YAML a sidecar parses.
func Render(cfg *config.Config, version string) ([]byte, error) {
	cfg.Version = version
	return yaml.Marshal(cfg)
}

// Compile validates m as a whole and compiles one config per Sidecar. Each
// config is checked with config.Parse exactly as the sidecar will read it;
// a problem is reported against the Sidecar it was compiled for.
func Compile(m *Mesh, o Options) (map[string]*NodeConfig, error) {
	if err := Validate(m, o); err != nil {
		return nil, err
	}
	out := map[string]*NodeConfig{}
	owner := map[string]Key{}
	var errs Errors
	for _, r := range m.List(KindSidecar) {
		fail := func(field, format string, args ...any) {
			errs = append(errs, Error{Key: r.Key(), Field: field, Reason: fmt.Sprintf(format, args...), File: r.File, Line: r.Line})
		}
		if other, dup := owner[r.Name]; dup {
			fail("name", "node id %q is also %s; node ids are unique across namespaces", r.Name, other)
			continue
		}
		owner[r.Name] = r.Key()
		nc := &nodeCompiler{m: m, o: o, r: r, s: r.Sidecar(), clusters: map[string]bool{}, filters: map[string]bool{}}
		cfg, err := nc.compile()
		if err != nil {
			fail("", "%v", err)
			continue
		}
		cfg.ApplyDefaults()
		content, err := Render(cfg, "")
		if err != nil {
			fail("", "rendering the compiled config: %v", err)
			continue
		}
		if _, err := config.Parse("node "+r.Name, content); err != nil {
			var ces config.Errors
			if errors.As(err, &ces) {
				for _, ce := range ces {
					fail("compiled config: "+ce.Path, "%s", ce.Reason)
				}
			} else {
				fail("compiled config", "%v", err)
			}
			continue
		}
		svc := ""
		if nc.s.Service != "" {
			k := ServiceRef(r.Namespace, nc.s.Service)
			svc = k.Namespace + "/" + k.Name
		}
		out[r.Name] = &NodeConfig{Node: r.Name, Service: svc, Config: cfg, Content: content}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

type nodeCompiler struct {
	m        *Mesh
	o        Options
	r        *Resource
	s        *SidecarSpec
	cfg      *config.Config
	clusters map[string]bool
	filters  map[string]bool
}

func (n *nodeCompiler) compile() (*config.Config, error) {
	n.cfg = &config.Config{
		Node:  config.Node{ID: n.r.Name, Metadata: map[string]string{"namespace": n.r.Namespace}},
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
	out := config.Listener{Name: "outbound", Address: n.s.Outbound, Direction: "outbound"}
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
		in := config.Listener{Name: "inbound", Address: n.s.Inbound, Direction: "inbound"}
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
		if a == nil {
			continue
		}
		d := a.Direction
		if d == "" {
			d = "outbound"
		}
		if d != "both" && d != direction {
			continue
		}
		ok := a.All
		for _, node := range a.Nodes {
			ok = ok || node == n.r.Name
		}
		for _, s := range a.Services {
			ok = ok || (self != Key{} && ServiceRef(r.Namespace, s) == self)
		}
		if ok {
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

// declareFilter adds a proxy filter for spec (with cfgOverride as its
// plugin config when set) once, and returns its name.
func (n *nodeCompiler) declareFilter(name string, f *FilterSpec, cfgOverride string) string {
	if n.filters[name] {
		return name
	}
	n.filters[name] = true
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
	}
	if cfgOverride != "" {
		fc.Config = config.RawConfig(cfgOverride)
	}
	n.cfg.Filters = append(n.cfg.Filters, fc)
	return name
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

// serviceCluster declares the cluster of a whole service (version "") or
// of one version, and returns its name.
func (n *nodeCompiler) serviceCluster(k Key, version string) string {
	svc := n.m.Get(k).Service()
	name := ClusterName(k)
	if version != "" {
		name = VersionClusterName(k, version)
	}
	if n.clusters[name] {
		return name
	}
	n.clusters[name] = true
	c := config.Cluster{Name: name, LB: svc.LB, ConnectTimeout: svc.ConnectTimeout}
	if version == "" {
		if svc.DNS != nil {
			d := *svc.DNS
			c.DNS = &d
		} else {
			seen := map[string]bool{}
			add := func(eps []Endpoint) {
				for _, e := range eps {
					if !seen[e.Address] {
						seen[e.Address] = true
						c.Endpoints = append(c.Endpoints, e)
					}
				}
			}
			add(svc.Endpoints)
			for _, v := range svc.Versions {
				add(v.Endpoints)
			}
		}
	} else {
		for _, v := range svc.Versions {
			if v.Name != version {
				continue
			}
			c.Endpoints = append(c.Endpoints, v.Endpoints...)
			if v.DNS != nil {
				d := *v.DNS
				c.DNS = &d
			}
		}
	}
	n.secureCluster(&c, k)
	n.cfg.Clusters = append(n.cfg.Clusters, c)
	return name
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
			case rr.Version != "":
				a.Cluster = n.serviceCluster(k, rr.Version)
			case len(rr.Split) > 0:
				for _, sp := range rr.Split {
					a.WeightedClusters = append(a.WeightedClusters, config.WeightedCluster{Cluster: n.serviceCluster(k, sp.Version), Weight: sp.Weight})
				}
			default:
				a.Cluster = n.wholeService(k)
			}
			if m := rr.Mirror; m != nil {
				mk := ServiceRef(rule.Namespace, m.Service)
				a.Mirror = &config.Mirror{Cluster: n.serviceCluster(mk, m.Version), Percent: m.Percent}
			}
			if rr.Retry != nil {
				rp := *rr.Retry
				rp.On = append([]string(nil), rr.Retry.On...)
				rp.RetriableStatusCodes = append([]int(nil), rr.Retry.RetriableStatusCodes...)
				a.Retry = &rp
			}
			route := config.Route{Name: prefix + name, Match: rr.Match, Route: a}
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
		vh.Routes = append(vh.Routes, config.Route{Name: prefix + "default", Match: Match{Prefix: "/"}, Route: &config.RouteAction{Cluster: n.wholeService(k)}})
	}
	return vh, nil
}

// serviceCluster with no version is the whole service.
func (n *nodeCompiler) wholeService(k Key) string { return n.serviceCluster(k, "") }

func isCatchAll(m Match) bool {
	return (m.Prefix == "" || m.Prefix == "/") && m.Path == "" && m.Regex == "" &&
		len(m.Methods) == 0 && len(m.Headers) == 0 && len(m.Query) == 0 && len(m.Cookies) == 0
}
