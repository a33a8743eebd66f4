package mesh

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/weftmesh/weft/proxy/config"
)

// Kind names a resource type.
type Kind string

// The resource kinds.
const (
	KindService     Kind = "Service"
	KindTrafficRule Kind = "TrafficRule"
	KindFilter      Kind = "Filter"
	KindPolicy      Kind = "Policy"
	KindSidecar     Kind = "Sidecar"
)

// Kinds lists every kind, in the order a mesh is validated and listed.
var Kinds = []Kind{KindService, KindTrafficRule, KindFilter, KindPolicy, KindSidecar}

// DefaultNamespace is the namespace of a resource that names none.
const DefaultNamespace = "default"

// ParseKind accepts a kind in any case, singular or plural ("services",
// "trafficrule", "Sidecar").
func ParseKind(s string) (Kind, error) {
	l := strings.TrimSuffix(strings.ToLower(s), "s")
	for _, k := range Kinds {
		if strings.ToLower(string(k)) == l {
			return k, nil
		}
	}
	return "", fmt.Errorf("unknown kind %q; want one of %s", s, kindList())
}

func kindList() string {
	var s []string
	for _, k := range Kinds {
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}

// Aliases for the proxy schema types a mesh resource embeds unchanged.
type (
	// DNS resolves instances by name (config.DNS).
	DNS = config.DNS
	// Match selects requests (config.Match).
	Match = config.Match
	// HeaderMatcher matches a header, query parameter or cookie.
	HeaderMatcher = config.HeaderMatcher
)

// Key identifies a resource.
type Key struct {
	Kind      Kind
	Namespace string
	Name      string
}

// String is "Kind namespace/name".
func (k Key) String() string { return fmt.Sprintf("%s %s/%s", k.Kind, k.Namespace, k.Name) }

// Less orders keys by kind (in Kinds order), namespace, name.
func (k Key) Less(o Key) bool {
	if k.Kind != o.Kind {
		return kindIndex(k.Kind) < kindIndex(o.Kind)
	}
	if k.Namespace != o.Namespace {
		return k.Namespace < o.Namespace
	}
	return k.Name < o.Name
}

func kindIndex(k Kind) int {
	for i, x := range Kinds {
		if x == k {
			return i
		}
	}
	return len(Kinds)
}

// Resource is one mesh object. Spec holds the kind's spec type
// (*ServiceSpec, *TrafficRuleSpec, *FilterSpec, *PolicySpec, *SidecarSpec).
type Resource struct {
	Kind      Kind   `yaml:"kind" json:"kind"`
	Name      string `yaml:"name" json:"name"`
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	// ResourceVersion is the store revision that last wrote this resource.
	// On a write, a non-zero value is a precondition: the write is refused
	// (409) unless the stored resource still has this version.
	ResourceVersion int64 `yaml:"resource_version,omitempty" json:"resource_version,omitempty"`
	Spec            any   `yaml:"spec" json:"spec"`
	// Owner is shown by the API (read-only): "api", "file:PATH" or
	// "file:PATH (orphaned…)". It is ignored on writes.
	Owner string `yaml:"owner,omitempty" json:"owner,omitempty"`

	// File and Line locate a resource read from a file (for errors).
	File string `yaml:"-" json:"-"`
	Line int    `yaml:"-" json:"-"`
}

// Key is the resource's identity.
func (r *Resource) Key() Key { return Key{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name} }

// Clone returns a deep copy (through YAML, which every spec round-trips).
func (r *Resource) Clone() *Resource {
	b, err := yaml.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("mesh: %s does not marshal: %v", r.Key(), err))
	}
	rs, err := Decode("clone", b)
	if err != nil || len(rs) != 1 {
		panic(fmt.Sprintf("mesh: %s does not round-trip: %v", r.Key(), err))
	}
	c := rs[0]
	c.File, c.Line = r.File, r.Line
	return c
}

// Service is the spec, or nil when r is another kind.
func (r *Resource) Service() *ServiceSpec { s, _ := r.Spec.(*ServiceSpec); return s }

// TrafficRule is the spec, or nil when r is another kind.
func (r *Resource) TrafficRule() *TrafficRuleSpec { s, _ := r.Spec.(*TrafficRuleSpec); return s }

// Filter is the spec, or nil when r is another kind.
func (r *Resource) Filter() *FilterSpec { s, _ := r.Spec.(*FilterSpec); return s }

// Policy is the spec, or nil when r is another kind.
func (r *Resource) Policy() *PolicySpec { s, _ := r.Spec.(*PolicySpec); return s }

// Sidecar is the spec, or nil when r is another kind.
func (r *Resource) Sidecar() *SidecarSpec { s, _ := r.Spec.(*SidecarSpec); return s }

// ServiceSpec is a mesh service: where its instances are, and its versions
// (subsets) for traffic splitting.
type ServiceSpec struct {
	// Endpoints are instances that belong to no version. Set these, or DNS,
	// or versions (or a mix of endpoints and versions).
	Endpoints []Endpoint `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
	// DNS resolves the whole service by name instead.
	DNS *config.DNS `yaml:"dns,omitempty" json:"dns,omitempty"`
	// Versions are named subsets that traffic rules split between.
	Versions []Version `yaml:"versions,omitempty" json:"versions,omitempty"`
	// LB is the load balancer of every cluster of this service (see
	// config.Cluster.LB). Default round_robin.
	LB string `yaml:"lb,omitempty" json:"lb,omitempty"`
	// ConnectTimeout bounds dialing an instance (default 1s).
	ConnectTimeout config.Duration `yaml:"connect_timeout,omitempty" json:"connect_timeout,omitempty"`
	// Hosts are extra Host names that reach this service through a sidecar,
	// besides NAME, NAME.NAMESPACE and NAME.NAMESPACE.svc[.cluster.local].
	Hosts []string `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	// Metadata is what Wasm filters read as cluster_metadata on every
	// cluster of this service (Envoy's Cluster.metadata).
	Metadata *config.Metadata `yaml:"metadata,omitempty" json:"metadata,omitempty"`
}

// Endpoint is one instance of a service: an address the proxy's cluster
// balances over, and whether a weft sidecar fronts it.
type Endpoint struct {
	Address string `yaml:"address" json:"address"`                   // host:port
	Weight  int    `yaml:"weight,omitempty" json:"weight,omitempty"` // default 1
	// Sidecar says whether a weft sidecar listens at Address (so callers
	// reach it over mTLS, with a trust domain). Unset: a sidecar is known
	// there when a Sidecar resource fronting the service has this address
	// as its inbound address (or this port on a wildcard host).
	Sidecar *bool `yaml:"sidecar,omitempty" json:"sidecar,omitempty"`
	// Metadata is what Wasm filters read as upstream_host_metadata once
	// this instance is the one a request went to.
	Metadata *config.Metadata `yaml:"metadata,omitempty" json:"metadata,omitempty"`
	// Zone is the instance's zone (topology.kubernetes.io/zone of a
	// Kubernetes endpoint): informational, the proxy does not balance by
	// zone yet.
	Zone string `yaml:"zone,omitempty" json:"zone,omitempty"`
}

// Version is one subset of a service's instances.
type Version struct {
	Name      string            `yaml:"name" json:"name"`
	Endpoints []Endpoint        `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
	DNS       *config.DNS       `yaml:"dns,omitempty" json:"dns,omitempty"`
	Labels    map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Metadata is merged over the service's metadata (key by key within a
	// namespace) as the cluster_metadata of this version's cluster.
	Metadata *config.Metadata `yaml:"metadata,omitempty" json:"metadata,omitempty"`
}

// TrafficRuleSpec routes the requests sent to one service. A service has at
// most one rule; its routes are tried in order, and a request no route
// matches goes to the whole service.
type TrafficRuleSpec struct {
	// Service is the service these routes apply to: "NAME" (same
	// namespace) or "NAMESPACE/NAME".
	Service string      `yaml:"service" json:"service"`
	Routes  []RuleRoute `yaml:"routes" json:"routes"`
}

// RuleRoute is one match and where matching requests go.
type RuleRoute struct {
	Name  string       `yaml:"name,omitempty" json:"name,omitempty"`
	Match config.Match `yaml:"match,omitempty" json:"match,omitempty"`
	// Version sends every matching request to one version.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// Split shares matching requests between versions; weights add to 100.
	Split []Split `yaml:"split,omitempty" json:"split,omitempty"`
	// Mirror copies a share of the requests to a service (or one version).
	Mirror  *MirrorSpec         `yaml:"mirror,omitempty" json:"mirror,omitempty"`
	Retry   *config.RetryPolicy `yaml:"retry,omitempty" json:"retry,omitempty"`
	Timeout config.Duration     `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Fault injects delays or aborts through the fault plugin filter.
	Fault *Fault `yaml:"fault,omitempty" json:"fault,omitempty"`
	// Filters are Filter resources (same namespace) run for this route.
	Filters []string `yaml:"filters,omitempty" json:"filters,omitempty"`
	// Metadata is what Wasm filters read as route_metadata.
	Metadata *config.Metadata `yaml:"metadata,omitempty" json:"metadata,omitempty"`
	// RequestHeaders edits the headers of matching requests before they
	// are forwarded; ResponseHeaders edits their responses' headers.
	RequestHeaders  config.HeaderMutation `yaml:"request_headers,omitempty" json:"request_headers,omitempty"`
	ResponseHeaders config.HeaderMutation `yaml:"response_headers,omitempty" json:"response_headers,omitempty"`
	// Rewrite changes the path (the matched prefix, or the whole path) or
	// the host of matching requests.
	Rewrite *Rewrite `yaml:"rewrite,omitempty" json:"rewrite,omitempty"`
	// Redirect answers matching requests with a redirect instead of
	// forwarding them; DirectResponse answers them locally. At most one
	// of them, and neither with version, split, mirror, retry or timeout.
	Redirect       *config.Redirect       `yaml:"redirect,omitempty" json:"redirect,omitempty"`
	DirectResponse *config.DirectResponse `yaml:"direct_response,omitempty" json:"direct_response,omitempty"`
}

// Rewrite edits a request before it is forwarded.
type Rewrite struct {
	// Prefix replaces the matched path prefix (the whole path of an exact
	// path match); it needs a prefix or path match, not a regex.
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	// Path replaces the whole path, whatever the match (not with Prefix).
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Host replaces the Host header.
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
}

// Split is one share of a route's requests: a version of the rule's
// service, or (Service set) another service, or one of its versions.
type Split struct {
	// Service is another service ("NAME" or "NAMESPACE/NAME") that takes
	// this share, as a Gateway API backendRef names one; "" is the rule's.
	Service string `yaml:"service,omitempty" json:"service,omitempty"`
	// Version is a version of the service; "" with Service set is the
	// whole of that service.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	Weight  int    `yaml:"weight" json:"weight"`
}

// MirrorSpec sends a fire-and-forget copy of requests.
type MirrorSpec struct {
	Service string  `yaml:"service" json:"service"`
	Version string  `yaml:"version,omitempty" json:"version,omitempty"`
	Percent float64 `yaml:"percent,omitempty" json:"percent,omitempty"` // default 100
}

// Fault injects failures on a route by running the fault plugin
// (plugins/fault): the Filter resource named by Filter (whose module is the
// fault plugin), with its plugin configuration replaced by the JSON form of
// Delay, Abort and Headers, the plugin's own schema:
// {"delay":{"duration":"100ms","percent":5},"abort":{"status":503,"percent":10}}.
type Fault struct {
	Filter string      `yaml:"filter" json:"filter"`
	Delay  *FaultDelay `yaml:"delay,omitempty" json:"delay,omitempty"`
	Abort  *FaultAbort `yaml:"abort,omitempty" json:"abort,omitempty"`
	// Headers limit the fault to requests carrying all of them (a value of
	// "" accepts any value), so clients opt in.
	Headers []FaultHeader `yaml:"headers,omitempty" json:"headers,omitempty"`
}

// FaultHeader is one header a request must carry to be faulted.
type FaultHeader struct {
	Name  string `yaml:"name" json:"name"`
	Value string `yaml:"value,omitempty" json:"value,omitempty"`
}

// MaxFaultDelay is the longest delay the fault plugin accepts (under the
// host's 30s pause deadline).
const MaxFaultDelay = 25 * time.Second

// FaultDelay holds a share of requests for a fixed time.
type FaultDelay struct {
	Duration config.Duration `yaml:"duration" json:"duration"`
	Percent  float64         `yaml:"percent" json:"percent"`
}

// FaultAbort answers a share of requests with a status.
type FaultAbort struct {
	Status  int     `yaml:"status" json:"status"`
	Percent float64 `yaml:"percent" json:"percent"`
	Body    string  `yaml:"body,omitempty" json:"body,omitempty"`
}

// FilterSpec is a Wasm plugin known to the control plane: its module (by
// digest, uploaded to the module registry), its configuration, and where it
// runs.
type FilterSpec struct {
	Module          ModuleRef        `yaml:"module" json:"module"`
	RootID          string           `yaml:"root_id,omitempty" json:"root_id,omitempty"`
	VMID            string           `yaml:"vm_id,omitempty" json:"vm_id,omitempty"`
	VMConfig        config.RawConfig `yaml:"vm_config,omitempty" json:"vm_config,omitempty"`
	Config          config.RawConfig `yaml:"config,omitempty" json:"config,omitempty"`
	FailurePolicy   string           `yaml:"failure_policy,omitempty" json:"failure_policy,omitempty"`
	PoolSize        int              `yaml:"pool_size,omitempty" json:"pool_size,omitempty"`
	MemoryLimitMiB  int              `yaml:"memory_limit_mib,omitempty" json:"memory_limit_mib,omitempty"`
	CallbackTimeout config.Duration  `yaml:"callback_timeout,omitempty" json:"callback_timeout,omitempty"`
	// IsolateVM: VMs of its own instead of sharing them with the filters of
	// the same vm_id, module and vm_config (the sidecar's isolate_vm).
	IsolateVM bool `yaml:"isolate_vm,omitempty" json:"isolate_vm,omitempty"`
	// LogLevel is the sidecar filter's log_level (trace … critical,
	// default info).
	LogLevel string `yaml:"log_level,omitempty" json:"log_level,omitempty"`
	// PluginName is the name the guest sees (the sidecar filter's
	// plugin_name; unset: the compiled filter's name, "" unnamed).
	PluginName *string `yaml:"plugin_name,omitempty" json:"plugin_name,omitempty"`
	// Singleton runs the plugin as a Wasm service (Envoy's bootstrap wasm
	// extension with singleton: true): a root context of its own, on no
	// listener, on the sidecars Apply picks (direction does not apply).
	// Routes cannot name it.
	Singleton bool `yaml:"singleton,omitempty" json:"singleton,omitempty"`
	// StatsTags are added to the stats_tags of every sidecar that runs
	// this filter (as a filter or a singleton). Like Envoy's, they apply to
	// every guest metric of that sidecar.
	StatsTags []config.StatsTag `yaml:"stats_tags,omitempty" json:"stats_tags,omitempty"`
	// Apply attaches the filter to sidecar listeners. Without it the filter
	// runs only where a route names it (filters, fault.filter).
	Apply *Selector `yaml:"apply,omitempty" json:"apply,omitempty"`
	// Order sorts listener filters (lower first; then by name).
	Order int `yaml:"order,omitempty" json:"order,omitempty"`
}

// ModuleRef names a module in the registry by its sha256 (64 hex digits),
// or an OCI image the control plane pulls into its registry when the
// resource is written; the write then pins SHA256 (the module) and Manifest
// (the digest the reference resolved to), and sidecars get only the digest.
type ModuleRef struct {
	SHA256 string `yaml:"sha256,omitempty" json:"sha256,omitempty"`
	// OCI is an image reference (REGISTRY/REPO:TAG, @sha256:HEX, or both).
	OCI string `yaml:"oci,omitempty" json:"oci,omitempty"`
	// PullPolicy: "if_not_present" (default) or "always" (a tag is resolved
	// again on every write of the resource).
	PullPolicy string `yaml:"pull_policy,omitempty" json:"pull_policy,omitempty"`
	// Manifest is the manifest digest OCI resolved to, set by the control
	// plane (read-only; a value written is replaced).
	Manifest string `yaml:"manifest,omitempty" json:"manifest,omitempty"`
	// Verify requires a cosign-format signature of the manifest by one of
	// these PEM public keys, beside any the control plane requires of every
	// module (weft control -verify-key).
	Verify *ModuleVerify `yaml:"verify,omitempty" json:"verify,omitempty"`
}

// ModuleVerify is a Filter's signature policy: PEM public keys, inline.
type ModuleVerify struct {
	Keys []string `yaml:"keys" json:"keys"`
}

// Selector picks sidecars. At least one of All, Services, Nodes is set.
type Selector struct {
	All bool `yaml:"all,omitempty" json:"all,omitempty"`
	// Services picks the sidecars fronting these services ("NAME" or
	// "NAMESPACE/NAME").
	Services []string `yaml:"services,omitempty" json:"services,omitempty"`
	// Nodes picks sidecars by node id.
	Nodes []string `yaml:"nodes,omitempty" json:"nodes,omitempty"`
	// Direction is the listener: "outbound" (default), "inbound" or "both".
	Direction string `yaml:"direction,omitempty" json:"direction,omitempty"`
}

// PolicySpec is an access policy for services: the mTLS mode of their
// sidecars' inbound listeners, and which callers may reach which of their
// endpoints (Istio's AuthorizationPolicy, flattened). It is compiled when
// the control plane runs a CA (Options.TrustDomain set) into the inbound
// listeners' authz of the services' sidecars.
type PolicySpec struct {
	Services []string `yaml:"services" json:"services"`
	// MTLS is "strict", "permissive" or "disable".
	MTLS string `yaml:"mtls,omitempty" json:"mtls,omitempty"`
	// Allow rules: when any policy of a service has one, a request must
	// match an allow rule (of any of them) or it is refused.
	Allow []AccessRule `yaml:"allow,omitempty" json:"allow,omitempty"`
	// Deny rules: a request matching one is refused, whatever allows it.
	Deny []AccessRule `yaml:"deny,omitempty" json:"deny,omitempty"`
	// DryRun tries the policy without enforcing it: what it would refuse
	// (together with the enforced policies) is logged by the sidecar and
	// counted in weft_authz_dry_run_denied_total; nothing is refused.
	DryRun bool `yaml:"dry_run,omitempty" json:"dry_run,omitempty"`
}

// AccessRule matches requests: every condition set must hold, and a list
// holds when any of its entries matches. A rule with no condition matches
// every request.
type AccessRule struct {
	// Name names the rule in x-weft-authz: denied:RULE and the denial
	// metrics, as POLICY.NAMESPACE.NAME (default allowN or denyN).
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// From are calling services ("NAME" or "NAMESPACE/NAME"): the SPIFFE
	// IDs of their sidecars (mTLS peers).
	From []string `yaml:"from,omitempty" json:"from,omitempty"`
	// Principals are peer SPIFFE IDs besides From's: exact, a namespace
	// wildcard (spiffe://td/ns/payments/*) or "*" (any mTLS peer).
	Principals []string `yaml:"principals,omitempty" json:"principals,omitempty"`
	// RequestPrincipals are JWT principals the auth plugin verified
	// (issuer/subject): exact, PREFIX* or "*" (any).
	RequestPrincipals []string `yaml:"request_principals,omitempty" json:"request_principals,omitempty"`
	// Paths are exact ("/health"), prefixes ("/api/*") or globs ("*"
	// within a segment, "**" across: "/users/*/orders").
	Paths []string `yaml:"paths,omitempty" json:"paths,omitempty"`
	// Methods are upper-case HTTP methods.
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	// Headers match request headers (the proxy's matchers).
	Headers []config.HeaderMatcher `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Ports are the sidecar's inbound (destination) ports.
	Ports []int `yaml:"ports,omitempty" json:"ports,omitempty"`
}

// SidecarSpec is one sidecar (a node): which service it fronts and where its
// listeners are. The resource name is the node id.
type SidecarSpec struct {
	// Service is the service this sidecar fronts ("NAME" or
	// "NAMESPACE/NAME"); optional for a client-only sidecar.
	Service string `yaml:"service,omitempty" json:"service,omitempty"`
	// Outbound is the address the local app sends mesh requests to.
	Outbound string `yaml:"outbound" json:"outbound"`
	// Inbound, when set, is where other sidecars reach the local app, which
	// listens at App.
	Inbound string `yaml:"inbound,omitempty" json:"inbound,omitempty"`
	App     string `yaml:"app,omitempty" json:"app,omitempty"`
	// Admin is the sidecar's admin address (config admin.address).
	Admin string `yaml:"admin,omitempty" json:"admin,omitempty"`
	// Egress limits the services this sidecar may call; empty means all.
	Egress []string `yaml:"egress,omitempty" json:"egress,omitempty"`
	// ServiceAccount is the workload's service account: its SPIFFE ID is
	// spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT. Default: the
	// fronted service's name, else the node id.
	ServiceAccount string `yaml:"service_account,omitempty" json:"service_account,omitempty"`
	// Metadata is what Wasm filters read as listener_metadata on this
	// sidecar's listeners (outbound and inbound).
	Metadata *config.Metadata `yaml:"metadata,omitempty" json:"metadata,omitempty"`
}

// envelope is a resource as written, before its spec is typed.
type envelope struct {
	Kind            string    `yaml:"kind"`
	Name            string    `yaml:"name"`
	Namespace       string    `yaml:"namespace"`
	ResourceVersion int64     `yaml:"resource_version"`
	Owner           string    `yaml:"owner"` // read-only, ignored
	Spec            yaml.Node `yaml:"spec"`
}

func newSpec(k Kind) any {
	switch k {
	case KindService:
		return &ServiceSpec{}
	case KindTrafficRule:
		return &TrafficRuleSpec{}
	case KindFilter:
		return &FilterSpec{}
	case KindPolicy:
		return &PolicySpec{}
	case KindSidecar:
		return &SidecarSpec{}
	}
	return nil
}

// Decode reads every resource in data: YAML documents separated by "---",
// or JSON (a resource or a list of resources; JSON is read as YAML).
// Decoding is strict: unknown fields and wrong types are errors that name
// the source, line and resource. An empty namespace becomes "default".
func Decode(name string, data []byte) ([]*Resource, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(t, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		var out []*Resource
		for i, item := range list {
			rs, err := Decode(fmt.Sprintf("%s[%d]", name, i), item)
			if err != nil {
				return nil, err
			}
			out = append(out, rs...)
		}
		return out, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*Resource
	for doc := 0; ; doc++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(n.Content) == 0 || (n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null") {
			continue // an empty document
		}
		r, err := decodeDoc(name, &n)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func decodeDoc(name string, n *yaml.Node) (*Resource, error) {
	line := n.Line
	if len(n.Content) > 0 {
		line = n.Content[0].Line
	}
	where := fmt.Sprintf("%s:%d", name, line)
	var env envelope
	if err := strictDecode(n, &env); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if env.Kind == "" {
		return nil, fmt.Errorf("%s: kind is required (one of %s)", where, kindList())
	}
	k, err := ParseKind(env.Kind)
	if err != nil {
		return nil, fmt.Errorf("%s: kind: %w", where, err)
	}
	r := &Resource{Kind: k, Name: env.Name, Namespace: env.Namespace, ResourceVersion: env.ResourceVersion, Owner: env.Owner, File: name, Line: line}
	if r.Namespace == "" {
		r.Namespace = DefaultNamespace
	}
	r.Spec = newSpec(k)
	if env.Spec.Kind != 0 && !(env.Spec.Kind == yaml.ScalarNode && env.Spec.Tag == "!!null") {
		if probs := strictDecodeAt(&env.Spec, r.Spec, "spec"); len(probs) > 0 {
			var errs []error
			for _, p := range probs {
				errs = append(errs, fmt.Errorf("%s:%d: %s: %s: %s", name, p.line, r.Key(), p.path, p.reason))
			}
			return nil, errors.Join(errs...)
		}
	}
	return r, nil
}

// strictDecode decodes n into v refusing unknown fields. yaml.v3 applies
// KnownFields only to a Decoder, so the node is encoded and decoded again;
// line numbers in errors are then relative, so they are removed.
func strictDecode(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return cleanYAMLError(err)
	}
	return nil
}

// problem is one decode problem placed in the source.
type problem struct {
	line   int
	path   string
	reason string
}

var (
	lineMsgRe   = regexp.MustCompile(`^line (\d+): (?s:(.*))$`)
	notFoundRe  = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	unmarshalRe = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	quotedRe    = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
)

// strictDecodeAt is strictDecode that places every problem: yaml.v3's
// lines count from the re-encoded fragment, so the fragment is parsed
// again, the node at that line found, and the same steps taken in n give
// the source line and the field path (prefix + ".routes[0].splitt"). An
// unknown field is named with the fields allowed there, not a Go type.
func strictDecodeAt(n *yaml.Node, v any, prefix string) []problem {
	b, err := yaml.Marshal(n)
	if err != nil {
		return []problem{{line: n.Line, path: prefix, reason: err.Error()}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err = dec.Decode(v)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var frag yaml.Node
	_ = yaml.Unmarshal(b, &frag)
	var root *yaml.Node
	if len(frag.Content) > 0 {
		root = frag.Content[0]
	}
	var out []problem
	for _, m := range msgs {
		p := problem{line: n.Line, path: prefix, reason: m}
		sm := lineMsgRe.FindStringSubmatch(m)
		if sm == nil || root == nil {
			out = append(out, p)
			continue
		}
		rel, _ := strconv.Atoi(sm[1])
		p.reason = sm[2]
		field, value := "", ""
		if f := notFoundRe.FindStringSubmatch(p.reason); f != nil {
			field = f[1]
			p.reason = fmt.Sprintf("unknown field %q; known fields here: %s", f[1], strings.Join(yamlFields(f[2]), ", "))
		} else if f := unmarshalRe.FindStringSubmatch(p.reason); f != nil {
			value = f[2]
			p.reason = fmt.Sprintf("want %s, got %s", wantOf(f[3]), gotOf(f[1], f[2]))
		} else if q := quotedRe.FindStringSubmatch(p.reason); q != nil {
			value, _ = strconv.Unquote(`"` + q[1] + `"`)
		}
		if steps := findAt(root, rel, field, value); steps != nil {
			orig, path := n, prefix
			for _, st := range steps {
				orig, path = st.follow(orig, path)
				if orig == nil {
					break
				}
			}
			if orig != nil {
				p.line, p.path = orig.Line, path
			}
		}
		out = append(out, p)
	}
	return out
}

// step is a mapping key or (key == "") a sequence index.
type step struct {
	key   string
	index int
}

// follow takes the step in n, returning the key node for a key (its line is
// the field's) or the element, and the path extended.
func (s step) follow(n *yaml.Node, path string) (*yaml.Node, string) {
	if s.key == "" {
		if n.Kind != yaml.SequenceNode || s.index >= len(n.Content) {
			return nil, path
		}
		return n.Content[s.index], fmt.Sprintf("%s[%d]", path, s.index)
	}
	if n.Kind == yaml.ScalarNode { // a key node from the step before: go to its value
		return nil, path
	}
	if n.Kind != yaml.MappingNode {
		return nil, path
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == s.key {
			return keyed{n.Content[i], n.Content[i+1]}.node(), path + "." + s.key
		}
	}
	return nil, path
}

// keyed pairs a key with its value; node returns the value with the key's
// line, so the next step walks the value and the problem shows the key.
type keyed struct{ k, v *yaml.Node }

func (kv keyed) node() *yaml.Node {
	c := *kv.v
	c.Line = kv.k.Line
	return &c
}

// findAt finds, under root, the field at line: the key named field, else
// the deepest value starting on that line (preferring one whose text is
// value). It returns the steps from root, or nil.
func findAt(root *yaml.Node, line int, field, value string) []step {
	var best []step
	bestDepth, bestScore := -1, -1
	var walk func(n *yaml.Node, path []step)
	walk = func(n *yaml.Node, path []step) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := append(append([]step(nil), path...), step{key: k.Value})
				score := -1
				switch {
				case field != "" && k.Value == field && k.Line == line:
					score = 3
				case field == "" && v.Line == line && v.Kind == yaml.ScalarNode && value != "" && v.Value == value:
					score = 2
				case field == "" && v.Line == line:
					score = 1
				}
				if score > bestScore || (score == bestScore && score >= 0 && len(p) > bestDepth) {
					best, bestDepth, bestScore = p, len(p), score
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, append(append([]step(nil), path...), step{index: i}))
			}
		}
	}
	walk(root, nil)
	if bestScore < 0 {
		return nil
	}
	return best
}

// yamlFields lists the YAML names of a spec type's fields, by the Go type
// name yaml.v3 prints ("mesh.RuleRoute", "config.Match").
func yamlFields(goType string) []string {
	var found []string
	seen := map[reflect.Type]bool{}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] || found != nil {
			return
		}
		seen[t] = true
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "-" || !f.IsExported() {
				continue
			}
			if tag == "" {
				tag = strings.ToLower(f.Name)
			}
			names = append(names, tag)
		}
		if t.String() == goType {
			found = names
			return
		}
		for i := 0; i < t.NumField(); i++ {
			visit(t.Field(i).Type)
		}
	}
	for _, k := range Kinds {
		visit(reflect.TypeOf(newSpec(k)))
	}
	return found
}

func wantOf(goType string) string {
	switch {
	case goType == "string" || goType == "config.RawConfig":
		return "a string"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	}
	return "a mapping"
}

func gotOf(tag, value string) string {
	got := map[string]string{"str": "the string", "int": "the number", "float": "the number", "bool": "the boolean",
		"null": "null", "seq": "a list", "map": "a mapping"}[tag]
	if got == "" {
		got = "!!" + tag
	}
	if value != "" {
		got += " " + strconv.Quote(value)
	}
	return got
}

// cleanYAMLError drops yaml.v3's "line N:" prefixes, which count from the
// re-encoded fragment and would mislead.
func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var msgs []string
		for _, e := range te.Errors {
			if i := strings.Index(e, ": "); strings.HasPrefix(e, "line ") && i > 0 {
				e = e[i+2:]
			}
			msgs = append(msgs, e)
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return err
}

// Encode writes resources as YAML documents, in key order.
func Encode(rs []*Resource) ([]byte, error) {
	if len(rs) == 0 {
		// No documents. yaml.v3's encoder refuses to close an empty stream
		// ("expected STREAM-START").
		return []byte{}, nil
	}
	sorted := append([]*Resource(nil), rs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Key().Less(sorted[j].Key()) })
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	for _, r := range sorted {
		if err := enc.Encode(r); err != nil {
			return nil, fmt.Errorf("%s: %w", r.Key(), err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
