package config

// Config is one whole sidecar configuration: what a YAML file holds and what
// a snapshot from the control plane carries. It is plain data; runtime
// packages compile their part of a validated Config into immutable objects.
type Config struct {
	// Version names this configuration (a file's is its sha256 prefix unless
	// set; the control plane sets its own). Shown by /config_dump.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// Node identifies this sidecar (Wasm property `node`).
	Node Node `yaml:"node,omitempty" json:"node,omitempty"`
	// Admin is the admin server (/ready, /stats/prometheus, ...).
	Admin Admin `yaml:"admin,omitempty" json:"admin,omitempty"`
	// Tracing propagates trace context and exports spans (off by default).
	Tracing Tracing `yaml:"tracing,omitempty" json:"tracing,omitempty"`
	// Listeners accept downstream traffic.
	Listeners []Listener `yaml:"listeners" json:"listeners"`
	// Clusters are the upstream services routes send to.
	Clusters []Cluster `yaml:"clusters,omitempty" json:"clusters,omitempty"`
	// Filters declares Wasm plugins; listeners and routes refer to them by name.
	Filters []Filter `yaml:"filters,omitempty" json:"filters,omitempty"`
	// WasmServices are Wasm plugins that run on their own, on no listener
	// (Envoy's bootstrap wasm extension): a root context with its ticks,
	// shared queues and call-outs. Same fields as a filter; pool_size
	// defaults to 1, a singleton.
	WasmServices []Filter `yaml:"wasm_services,omitempty" json:"wasm_services,omitempty"`
	// StatsTags turn parts of Wasm guest metric names into labels (Envoy's
	// stats_config.stats_tags). None: the convention NAME_KEY=VALUE.
	StatsTags []StatsTag `yaml:"stats_tags,omitempty" json:"stats_tags,omitempty"`
}

// StatsTag is one tag extraction rule: the regex's first capture group is
// cut out of a guest metric's name; the second (or the first, when it is
// the only one) is the value of the label TagName.
type StatsTag struct {
	TagName string `yaml:"tag_name" json:"tag_name"`
	Regex   string `yaml:"regex" json:"regex"`
}

// Node describes the sidecar itself.
type Node struct {
	ID       string            `yaml:"id,omitempty" json:"id,omitempty"`
	Cluster  string            `yaml:"cluster,omitempty" json:"cluster,omitempty"`
	Metadata map[string]string `yaml:"metadata,omitempty" json:"metadata,omitempty"`
}

// Admin configures the admin server. An empty Address means the default
// 127.0.0.1:9901; "off" disables it.
type Admin struct {
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
}

// Tracing configures distributed tracing: every request continues or starts
// a trace (W3C traceparent, B3), and sampled hops are exported as OTLP spans.
type Tracing struct {
	Enabled bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// ServiceName is the OTLP resource's service.name (default node.id, or
	// "weft" without one).
	ServiceName string `yaml:"service_name,omitempty" json:"service_name,omitempty"`
	// SamplingPercent is the share of new traces recorded, 0-100 (default
	// 100). A caller's sampling decision is honoured; 0 records only traces
	// the caller sampled or forced.
	SamplingPercent *float64 `yaml:"sampling_percent,omitempty" json:"sampling_percent,omitempty"`
	// ForceHeader names the request header whose value "force" records the
	// trace whatever the ratio (default x-weft-trace).
	ForceHeader string `yaml:"force_header,omitempty" json:"force_header,omitempty"`
	// OTLPEndpoint is the OTLP/HTTP traces URL, e.g.
	// http://127.0.0.1:4318/v1/traces. Required when enabled.
	OTLPEndpoint  string   `yaml:"otlp_endpoint,omitempty" json:"otlp_endpoint,omitempty"`
	BatchSize     int      `yaml:"batch_size,omitempty" json:"batch_size,omitempty"`         // default 512
	QueueSize     int      `yaml:"queue_size,omitempty" json:"queue_size,omitempty"`         // default 4096
	FlushInterval Duration `yaml:"flush_interval,omitempty" json:"flush_interval,omitempty"` // default 1s
	ExportTimeout Duration `yaml:"export_timeout,omitempty" json:"export_timeout,omitempty"` // default 5s
}

// Listener is one downstream port and what runs behind it.
type Listener struct {
	Name    string `yaml:"name" json:"name"`
	Address string `yaml:"address" json:"address"`
	// Direction is "outbound" (the local app calls the mesh) or "inbound"
	// (other sidecars call the local app). Default outbound.
	Direction string `yaml:"direction,omitempty" json:"direction,omitempty"`
	// Protocol is "http" (default: virtual hosts route each request) or
	// "tcp" (every connection is forwarded to TCP.Cluster, bytes as is).
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	Limits   Limits `yaml:"limits,omitempty" json:"limits,omitempty"`
	// Filters are plugin names (from Config.Filters) run on every request of
	// this listener, in order, before the route is chosen.
	Filters      []string      `yaml:"filters,omitempty" json:"filters,omitempty"`
	AccessLog    AccessLog     `yaml:"access_log,omitempty" json:"access_log,omitempty"`
	VirtualHosts []VirtualHost `yaml:"virtual_hosts,omitempty" json:"virtual_hosts,omitempty"`
	// TCP is where a tcp listener forwards its connections (protocol tcp
	// only; it replaces VirtualHosts).
	TCP *TCPProxy `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	// TLS makes the listener accept mTLS (strict or permissive).
	TLS *ListenerTLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// Authz allows or denies requests by peer identity and request
	// attributes, after the listener's filters and before routing.
	Authz *Authz `yaml:"authz,omitempty" json:"authz,omitempty"`
	// HTTP2 tunes the HTTP/2 an http listener speaks beside HTTP/1.1 on the
	// same port (h2c with prior knowledge or Upgrade, h2 by ALPN over TLS).
	HTTP2 HTTP2 `yaml:"http2,omitempty" json:"http2,omitempty"`
	// Metadata is what Wasm filters read as listener_metadata.
	Metadata *Metadata `yaml:"metadata,omitempty" json:"metadata,omitempty"`
	// GRPCWeb translates gRPC-Web calls from browsers into gRPC to the
	// upstream (Envoy's envoy.filters.http.grpc_web); nil: off.
	GRPCWeb *GRPCWeb `yaml:"grpc_web,omitempty" json:"grpc_web,omitempty"`
}

// GRPCWeb turns on gRPC-Web on an http listener: requests with content-type
// application/grpc-web, application/grpc-web+proto or
// application/grpc-web-text (base64) go upstream as gRPC, and their answers
// come back as gRPC-Web, trailers in the body. The empty block ({}) turns
// it on.
type GRPCWeb struct {
	// CORS answers browsers' preflight requests and marks answers for the
	// allowed origins (nil: no CORS headers, preflights are routed).
	CORS *CORS `yaml:"cors,omitempty" json:"cors,omitempty"`
}

// CORS is a cross-origin policy for browser callers.
type CORS struct {
	// AllowOrigins are the origins allowed ("https://app.example.com"), or
	// "*" for any.
	AllowOrigins []string `yaml:"allow_origins" json:"allow_origins"`
	// AllowHeaders are the request headers allowed; empty: whatever the
	// preflight asks for.
	AllowHeaders []string `yaml:"allow_headers,omitempty" json:"allow_headers,omitempty"`
	// ExposeHeaders are response headers the page may read, beyond
	// grpc-status and grpc-message (always exposed).
	ExposeHeaders []string `yaml:"expose_headers,omitempty" json:"expose_headers,omitempty"`
	// MaxAge is how long a browser may cache a preflight's answer (0: the
	// browser's default).
	MaxAge Duration `yaml:"max_age,omitempty" json:"max_age,omitempty"`
	// AllowCredentials lets the page send cookies and Authorization.
	AllowCredentials bool `yaml:"allow_credentials,omitempty" json:"allow_credentials,omitempty"`
}

// The values of HTTP2.Server.
const (
	H2ServerWeft = "weft"
	H2ServerXNet = "x/net"
)

// HTTP2 are a listener's HTTP/2 settings. Zero values take the defaults in
// docs/config.md.
type HTTP2 struct {
	// Disabled turns HTTP/2 off: the listener speaks HTTP/1.1 only.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// MaxConcurrentStreams per connection (default 250).
	MaxConcurrentStreams int `yaml:"max_concurrent_streams,omitempty" json:"max_concurrent_streams,omitempty"`
	// InitialStreamWindowSize is the flow-control window a stream starts
	// with, bounding what a peer may send ahead on one stream (default 1 MiB).
	InitialStreamWindowSize int `yaml:"initial_stream_window_size,omitempty" json:"initial_stream_window_size,omitempty"`
	// InitialConnectionWindowSize bounds what a peer may send ahead on the
	// whole connection (default 4 MiB).
	InitialConnectionWindowSize int `yaml:"initial_connection_window_size,omitempty" json:"initial_connection_window_size,omitempty"`
	// MaxHeaderListSize bounds a request's decoded header list (default:
	// the listener's limits.max_header_bytes).
	MaxHeaderListSize int `yaml:"max_header_list_size,omitempty" json:"max_header_list_size,omitempty"`
	// KeepaliveInterval sends a PING after this long without a frame from
	// the peer; KeepaliveTimeout closes the connection when it is not
	// answered (default 0: no pings; idle_timeout still closes idle ones).
	KeepaliveInterval Duration `yaml:"keepalive_interval,omitempty" json:"keepalive_interval,omitempty"`
	KeepaliveTimeout  Duration `yaml:"keepalive_timeout,omitempty" json:"keepalive_timeout,omitempty"` // default 20s
	// Server is the HTTP/2 server implementation: "weft" (default: weft's
	// own, proxy/listener/h2server.go) or "x/net" (golang.org/x/net/http2's,
	// the one before it, kept as a fallback).
	Server string `yaml:"server,omitempty" json:"server,omitempty"`
}

// TCPProxy forwards a tcp listener's connections to a cluster: one
// endpoint per connection, picked by the cluster's load balancer, bytes
// copied both ways (with the cluster's tls, if any).
type TCPProxy struct {
	// Cluster is the cluster connections go to.
	Cluster string `yaml:"cluster" json:"cluster"`
	// IdleTimeout closes a connection when no byte has moved either way
	// for this long (default 1h).
	IdleTimeout Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`
	// ConnectTimeout bounds connecting to the endpoint, TLS handshake
	// included (default: the cluster's connect_timeout).
	ConnectTimeout Duration `yaml:"connect_timeout,omitempty" json:"connect_timeout,omitempty"`
}

// Limits bound what one listener accepts. Zero values take the defaults
// documented in docs/config.md.
type Limits struct {
	MaxHeaderBytes  int      `yaml:"max_header_bytes,omitempty" json:"max_header_bytes,omitempty"`   // default 64 KiB
	MaxHeadersCount int      `yaml:"max_headers_count,omitempty" json:"max_headers_count,omitempty"` // default 100; 431 over it
	MaxBodyBytes    int      `yaml:"max_body_bytes,omitempty" json:"max_body_bytes,omitempty"`       // default 4 MiB
	ReadTimeout     Duration `yaml:"read_timeout,omitempty" json:"read_timeout,omitempty"`           // default 30s
	WriteTimeout    Duration `yaml:"write_timeout,omitempty" json:"write_timeout,omitempty"`         // default 30s
	IdleTimeout     Duration `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"`           // default 90s
	MaxConnections  int      `yaml:"max_connections,omitempty" json:"max_connections,omitempty"`     // default 10000
}

// AccessLog configures the per-request log line.
type AccessLog struct {
	Enabled bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// Path is a file, or "stdout" (default) or "stderr".
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Format is "json" (default) or "console".
	Format string `yaml:"format,omitempty" json:"format,omitempty"`
	// Fields chosen from the documented set; empty means all.
	Fields []string `yaml:"fields,omitempty" json:"fields,omitempty"`
}

// VirtualHost groups routes by the request's Host.
type VirtualHost struct {
	Name string `yaml:"name" json:"name"`
	// Domains: exact ("api.local"), wildcard prefix ("*.local"), suffix
	// ("api.*") or "*". A port in the Host header is ignored unless a domain
	// names one.
	Domains []string `yaml:"domains" json:"domains"`
	Routes  []Route  `yaml:"routes" json:"routes"`
}

// Route is one match and what to do with a request that matches. Exactly one
// of Route, Redirect, DirectResponse is set.
type Route struct {
	Name            string          `yaml:"name,omitempty" json:"name,omitempty"`
	Match           Match           `yaml:"match" json:"match"`
	Route           *RouteAction    `yaml:"route,omitempty" json:"route,omitempty"`
	Redirect        *Redirect       `yaml:"redirect,omitempty" json:"redirect,omitempty"`
	DirectResponse  *DirectResponse `yaml:"direct_response,omitempty" json:"direct_response,omitempty"`
	RequestHeaders  HeaderMutation  `yaml:"request_headers,omitempty" json:"request_headers,omitempty"`
	ResponseHeaders HeaderMutation  `yaml:"response_headers,omitempty" json:"response_headers,omitempty"`
	// Filters are plugin names run for this route after the listener's.
	Filters []string `yaml:"filters,omitempty" json:"filters,omitempty"`
	// Metadata is what Wasm filters read as route_metadata.
	Metadata *Metadata `yaml:"metadata,omitempty" json:"metadata,omitempty"`
}

// Metadata is Envoy's core.Metadata: values filters read as properties
// (route_metadata, cluster_metadata, listener_metadata), by namespace.
type Metadata struct {
	// FilterMetadata maps a namespace (by convention a filter's name, e.g.
	// envoy.filters.http.wasm) to a map of values.
	FilterMetadata map[string]map[string]any `yaml:"filter_metadata,omitempty" json:"filter_metadata,omitempty"`
}

// Match selects requests. Every set condition must hold.
type Match struct {
	// Exactly one of Prefix, Path, Regex; none means prefix "/".
	Prefix  string          `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	Path    string          `yaml:"path,omitempty" json:"path,omitempty"`
	Regex   string          `yaml:"regex,omitempty" json:"regex,omitempty"`
	Methods []string        `yaml:"methods,omitempty" json:"methods,omitempty"`
	Headers []HeaderMatcher `yaml:"headers,omitempty" json:"headers,omitempty"`
	Query   []HeaderMatcher `yaml:"query,omitempty" json:"query,omitempty"`
	Cookies []HeaderMatcher `yaml:"cookies,omitempty" json:"cookies,omitempty"`
	// GRPC matches a gRPC service (and method): it is the path
	// /SERVICE/METHOD (or the prefix /SERVICE/) and a gRPC content type,
	// in place of prefix, path and regex.
	GRPC *GRPCMatch `yaml:"grpc,omitempty" json:"grpc,omitempty"`
}

// GRPCMatch names a gRPC service, e.g. helloworld.Greeter, and optionally
// one of its methods, e.g. SayHello.
type GRPCMatch struct {
	Service string `yaml:"service" json:"service"`
	Method  string `yaml:"method,omitempty" json:"method,omitempty"`
}

// HeaderMatcher matches one header, query parameter or cookie by name.
// Exactly one of Exact, Prefix, Regex, Present, Absent is set.
type HeaderMatcher struct {
	Name    string `yaml:"name" json:"name"`
	Exact   string `yaml:"exact,omitempty" json:"exact,omitempty"`
	Prefix  string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	Regex   string `yaml:"regex,omitempty" json:"regex,omitempty"`
	Present bool   `yaml:"present,omitempty" json:"present,omitempty"`
	Absent  bool   `yaml:"absent,omitempty" json:"absent,omitempty"`
	// Invert negates the result.
	Invert bool `yaml:"invert,omitempty" json:"invert,omitempty"`
}

// RouteAction forwards to a cluster. Exactly one of Cluster, WeightedClusters.
type RouteAction struct {
	Cluster          string            `yaml:"cluster,omitempty" json:"cluster,omitempty"`
	WeightedClusters []WeightedCluster `yaml:"weighted_clusters,omitempty" json:"weighted_clusters,omitempty"`
	// Mirror sends a copy of a share of the requests to a shadow cluster; its
	// answer is discarded.
	Mirror        *Mirror `yaml:"mirror,omitempty" json:"mirror,omitempty"`
	PrefixRewrite string  `yaml:"prefix_rewrite,omitempty" json:"prefix_rewrite,omitempty"`
	// PathRewrite replaces the whole path (the query is kept); not with
	// PrefixRewrite.
	PathRewrite string `yaml:"path_rewrite,omitempty" json:"path_rewrite,omitempty"`
	HostRewrite string `yaml:"host_rewrite,omitempty" json:"host_rewrite,omitempty"`
	// Timeout bounds the whole request, retries included. Default 15s; "0s"
	// is the same as unset (the default applies), so for a long-lived
	// request set a long timeout such as "1h".
	Timeout Duration     `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Retry   *RetryPolicy `yaml:"retry,omitempty" json:"retry,omitempty"`
}

// WeightedCluster is one share of a split. Weights must add up to 100.
type WeightedCluster struct {
	Cluster string `yaml:"cluster" json:"cluster"`
	Weight  int    `yaml:"weight" json:"weight"`
}

// Mirror copies requests to a shadow cluster (fire and forget).
type Mirror struct {
	Cluster string  `yaml:"cluster" json:"cluster"`
	Percent float64 `yaml:"percent,omitempty" json:"percent,omitempty"` // default 100
}

// RetryPolicy says when and how often a request is tried again. A route
// without one gets DefaultRetryOn: tries that got no answer (the endpoint
// refused the connection, or it broke) are retried on another endpoint.
type RetryPolicy struct {
	// Disabled turns retries off, the default ones included.
	Disabled bool `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	// Attempts is the number of retries after the first try (default 2).
	Attempts int `yaml:"attempts,omitempty" json:"attempts,omitempty"`
	// On: "5xx", "gateway-error", "connect-failure", "reset",
	// "retriable-status-codes".
	On                   []string `yaml:"on,omitempty" json:"on,omitempty"`
	RetriableStatusCodes []int    `yaml:"retriable_status_codes,omitempty" json:"retriable_status_codes,omitempty"`
	PerTryTimeout        Duration `yaml:"per_try_timeout,omitempty" json:"per_try_timeout,omitempty"`
	BackoffBase          Duration `yaml:"backoff_base,omitempty" json:"backoff_base,omitempty"` // default 25ms
	BackoffMax           Duration `yaml:"backoff_max,omitempty" json:"backoff_max,omitempty"`   // default 10×base
	RetryNonIdempotent   bool     `yaml:"retry_non_idempotent,omitempty" json:"retry_non_idempotent,omitempty"`
	BudgetPercent        float64  `yaml:"budget_percent,omitempty" json:"budget_percent,omitempty"`                 // default 20 (% of active requests)
	BudgetMinConcurrency int      `yaml:"budget_min_concurrency,omitempty" json:"budget_min_concurrency,omitempty"` // default 10
}

// Redirect answers with a 3xx.
type Redirect struct {
	Scheme     string `yaml:"scheme,omitempty" json:"scheme,omitempty"`
	Host       string `yaml:"host,omitempty" json:"host,omitempty"`
	Path       string `yaml:"path,omitempty" json:"path,omitempty"`
	StatusCode int    `yaml:"status_code,omitempty" json:"status_code,omitempty"` // default 301
}

// DirectResponse answers locally.
type DirectResponse struct {
	Status int    `yaml:"status" json:"status"`
	Body   string `yaml:"body,omitempty" json:"body,omitempty"`
}

// HeaderMutation edits headers. Remove runs first, then Set, then Add.
type HeaderMutation struct {
	Add    []Header `yaml:"add,omitempty" json:"add,omitempty"`
	Set    []Header `yaml:"set,omitempty" json:"set,omitempty"`
	Remove []string `yaml:"remove,omitempty" json:"remove,omitempty"`
}

// Header is a name and a value.
type Header struct {
	Name  string `yaml:"name" json:"name"`
	Value string `yaml:"value" json:"value"`
}

// Cluster is a named upstream service.
type Cluster struct {
	Name string `yaml:"name" json:"name"`
	// Endpoints are static; DNS resolves a name instead. One of them.
	Endpoints []Endpoint `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
	DNS       *DNS       `yaml:"dns,omitempty" json:"dns,omitempty"`
	// LB: "round_robin" (default, smooth weighted), "least_request", "random",
	// "ring_hash".
	LB     string  `yaml:"lb,omitempty" json:"lb,omitempty"`
	HashOn *HashOn `yaml:"hash_on,omitempty" json:"hash_on,omitempty"`
	// ConnectTimeout bounds dialing an endpoint (default 1s).
	ConnectTimeout Duration `yaml:"connect_timeout,omitempty" json:"connect_timeout,omitempty"`
	// MaxConnsPerEndpoint bounds the keep-alive pool (default 1024).
	MaxConnsPerEndpoint int               `yaml:"max_conns_per_endpoint,omitempty" json:"max_conns_per_endpoint,omitempty"`
	IdleTimeout         Duration          `yaml:"idle_timeout,omitempty" json:"idle_timeout,omitempty"` // default 60s
	HealthCheck         *HealthCheck      `yaml:"health_check,omitempty" json:"health_check,omitempty"`
	OutlierDetection    *OutlierDetection `yaml:"outlier_detection,omitempty" json:"outlier_detection,omitempty"`
	CircuitBreakers     CircuitBreakers   `yaml:"circuit_breakers,omitempty" json:"circuit_breakers,omitempty"`
	// PanicThreshold: when fewer than this percent of endpoints are healthy,
	// balance across all of them. Default 50 (also when 0); -1 turns panic
	// mode off.
	PanicThreshold float64 `yaml:"panic_threshold,omitempty" json:"panic_threshold,omitempty"`
	// TLS makes connections to the endpoints mTLS, checking the server's
	// SPIFFE ID.
	TLS *ClusterTLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// Protocol is what the proxy speaks to the endpoints: "http1" (default),
	// "http2" (h2 over TLS, h2c in plaintext; one multiplexed connection
	// carries many requests) or "auto" (over TLS: h2 when the endpoint
	// offers it by ALPN, else HTTP/1.1; in plaintext: the downstream's
	// protocol).
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	// Metadata is what Wasm filters read as cluster_metadata.
	Metadata *Metadata `yaml:"metadata,omitempty" json:"metadata,omitempty"`
}

// Endpoint is one upstream address.
type Endpoint struct {
	Address string `yaml:"address" json:"address"`                   // host:port
	Weight  int    `yaml:"weight,omitempty" json:"weight,omitempty"` // default 1
	// Metadata is what Wasm filters read as upstream_host_metadata once
	// this endpoint is the one the request or connection went to (Envoy's
	// LbEndpoint.metadata).
	Metadata *Metadata `yaml:"metadata,omitempty" json:"metadata,omitempty"`
}

// DNS resolves a cluster's endpoints (A/AAAA) and refreshes them.
type DNS struct {
	Name    string   `yaml:"name" json:"name"`
	Port    int      `yaml:"port" json:"port"`
	Refresh Duration `yaml:"refresh,omitempty" json:"refresh,omitempty"` // default 30s
}

// HashOn picks the ring-hash key. Exactly one field is set.
type HashOn struct {
	Header   string `yaml:"header,omitempty" json:"header,omitempty"`
	Cookie   string `yaml:"cookie,omitempty" json:"cookie,omitempty"`
	SourceIP bool   `yaml:"source_ip,omitempty" json:"source_ip,omitempty"`
}

// HealthCheck is an active check per endpoint: an HTTP GET of Path, or,
// with GRPC set, a call of the gRPC health service.
type HealthCheck struct {
	Path               string   `yaml:"path,omitempty" json:"path,omitempty"`                               // default /healthz (HTTP checks)
	Host               string   `yaml:"host,omitempty" json:"host,omitempty"`                               // Host (:authority) sent; default the endpoint's address
	Interval           Duration `yaml:"interval,omitempty" json:"interval,omitempty"`                       // default 5s
	Timeout            Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`                         // default 1s
	HealthyThreshold   int      `yaml:"healthy_threshold,omitempty" json:"healthy_threshold,omitempty"`     // default 2
	UnhealthyThreshold int      `yaml:"unhealthy_threshold,omitempty" json:"unhealthy_threshold,omitempty"` // default 3
	ExpectedStatuses   []int    `yaml:"expected_statuses,omitempty" json:"expected_statuses,omitempty"`     // default 200-399
	// GRPC makes each check a grpc.health.v1.Health/Check call over the
	// cluster's HTTP/2 connections (the cluster's protocol must be http2
	// or auto); the endpoint passes when it answers SERVING.
	GRPC *GRPCHealthCheck `yaml:"grpc,omitempty" json:"grpc,omitempty"`
}

// GRPCHealthCheck is a gRPC health check (grpc.health.v1.Health/Check).
type GRPCHealthCheck struct {
	// Service is the service name the check asks about; "" asks about the
	// server's overall health.
	Service string `yaml:"service,omitempty" json:"service,omitempty"`
}

// OutlierDetection ejects endpoints that fail passively observed requests.
// It is on with its defaults when a cluster does not configure it.
type OutlierDetection struct {
	// Disabled turns passive ejection off.
	Disabled                 bool     `yaml:"disabled,omitempty" json:"disabled,omitempty"`
	Consecutive5xx           int      `yaml:"consecutive_5xx,omitempty" json:"consecutive_5xx,omitempty"`                       // default 5
	ConsecutiveGatewayErrors int      `yaml:"consecutive_gateway_errors,omitempty" json:"consecutive_gateway_errors,omitempty"` // default 0 (off)
	Interval                 Duration `yaml:"interval,omitempty" json:"interval,omitempty"`                                     // default 10s
	BaseEjectionTime         Duration `yaml:"base_ejection_time,omitempty" json:"base_ejection_time,omitempty"`                 // default 30s
	MaxEjectionTime          Duration `yaml:"max_ejection_time,omitempty" json:"max_ejection_time,omitempty"`                   // default 300s
	MaxEjectionPercent       float64  `yaml:"max_ejection_percent,omitempty" json:"max_ejection_percent,omitempty"`             // default 10
}

// CircuitBreakers bound a cluster's concurrency. Zero takes the default
// (1024 each; max_retries too, since the retry budget is the real guard).
type CircuitBreakers struct {
	MaxConnections int `yaml:"max_connections,omitempty" json:"max_connections,omitempty"`
	MaxPending     int `yaml:"max_pending,omitempty" json:"max_pending,omitempty"`
	MaxRequests    int `yaml:"max_requests,omitempty" json:"max_requests,omitempty"`
	MaxRetries     int `yaml:"max_retries,omitempty" json:"max_retries,omitempty"`
}

// Filter declares one Wasm plugin.
type Filter struct {
	Name string `yaml:"name" json:"name"`
	// PluginName is the name the guest sees as Envoy's plugin name (the
	// plugin_name property, and the NAME of "wasm log NAME ROOT_ID VM_ID:"
	// lines). Unset: the filter's name. "" is an unnamed plugin, as Envoy
	// runs one whose PluginConfig has no name ("wasm log: TEXT").
	PluginName *string `yaml:"plugin_name,omitempty" json:"plugin_name,omitempty"`
	Module     Module  `yaml:"module" json:"module"`
	RootID     string  `yaml:"root_id,omitempty" json:"root_id,omitempty"`
	VMID       string  `yaml:"vm_id,omitempty" json:"vm_id,omitempty"`
	// VMConfig and Config are strings, or YAML values turned into JSON.
	VMConfig RawConfig `yaml:"vm_config,omitempty" json:"vm_config,omitempty"`
	Config   RawConfig `yaml:"config,omitempty" json:"config,omitempty"`
	// FailurePolicy: "fail_closed" (default) or "fail_open".
	FailurePolicy string `yaml:"failure_policy,omitempty" json:"failure_policy,omitempty"`
	// PoolSize is the number of VMs (default GOMAXPROCS-1, at least 1),
	// which also bounds the plugin's guest calls running at once.
	PoolSize int `yaml:"pool_size,omitempty" json:"pool_size,omitempty"`
	// MemoryLimit per VM, in MiB (default 64).
	MemoryLimitMiB int `yaml:"memory_limit_mib,omitempty" json:"memory_limit_mib,omitempty"`
	// CallbackTimeout bounds one call into the guest (default 50ms): CPU
	// in the guest's own code; time it waits in a host function or for a
	// CPU is not charged, so a busy machine is not taken for a runaway
	// guest. A call is also stopped after 200 × this of wall time (at least
	// 10 s).
	CallbackTimeout Duration `yaml:"callback_timeout,omitempty" json:"callback_timeout,omitempty"`
	// Trusted runs the filter without a callback deadline: calls are several
	// times cheaper, but a guest stuck in a loop holds its VM for good.
	Trusted bool `yaml:"trusted,omitempty" json:"trusted,omitempty"`
	// MaxBodyBytes bounds what is buffered for this filter (default 1 MiB).
	MaxBodyBytes int `yaml:"max_body_bytes,omitempty" json:"max_body_bytes,omitempty"`
	// IsolateVM gives the filter VMs of its own. By default filters with
	// the same vm_id, module, vm_config and VM limits (pool_size,
	// memory_limit_mib, callback_timeout, trusted) share their VMs, each
	// with its own root context, as Envoy shares one VM between plugins.
	IsolateVM bool `yaml:"isolate_vm,omitempty" json:"isolate_vm,omitempty"`
	// LogLevel is the lowest level of the guest's log lines that are
	// written, and what proxy_get_log_level answers: trace, debug, info
	// (default), warn, error or critical. The sidecar's own -log-level
	// still applies on top.
	LogLevel string `yaml:"log_level,omitempty" json:"log_level,omitempty"`
}

// Module locates a Wasm module: a path relative to the config file, a URL
// (fetched, then verified against SHA256, which a URL requires), or an OCI
// image reference (pulled from its registry and cached by digest).
type Module struct {
	Path   string `yaml:"path,omitempty" json:"path,omitempty"`
	URL    string `yaml:"url,omitempty" json:"url,omitempty"`
	SHA256 string `yaml:"sha256,omitempty" json:"sha256,omitempty"`
	// OCI is an image reference: REGISTRY/REPO:TAG, REGISTRY/REPO@sha256:HEX,
	// or both (a tag pinned to a digest; refused if the tag has moved).
	OCI string `yaml:"oci,omitempty" json:"oci,omitempty"`
	// PullPolicy is "if_not_present" (default: a reference pulled before
	// is served from the cache) or "always" (a tag is resolved again on
	// every load; the blob is fetched only if its digest is new).
	PullPolicy string `yaml:"pull_policy,omitempty" json:"pull_policy,omitempty"`
	// PullSecret is a docker config.json with the registry's credentials
	// (relative to the config file); empty: the user's docker config.
	PullSecret string `yaml:"pull_secret,omitempty" json:"pull_secret,omitempty"`
	// CAFile is a PEM bundle trusted for the registry's TLS, beside the
	// system roots.
	CAFile string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	// Verify requires a cosign-format signature of the module's manifest
	// by one of these public keys (PEM files, relative to the config file).
	Verify *ModuleVerify `yaml:"verify,omitempty" json:"verify,omitempty"`
}

// ModuleVerify is a module's signature policy.
type ModuleVerify struct {
	Keys []string `yaml:"keys" json:"keys"`
}

// ListenerTLS configures mTLS on a listener.
type ListenerTLS struct {
	// Mode: "disabled" (default), "strict" (only mTLS with a client
	// certificate chained to the trust bundle) or "permissive" (mTLS and
	// plaintext on the same port).
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// MinVersion is "1.2" (default; TLS 1.3 is still preferred) or "1.3".
	MinVersion string `yaml:"min_version,omitempty" json:"min_version,omitempty"`
	// CertFile, KeyFile and CAFile are a static identity (PEM files: the
	// chain with a SPIFFE URI SAN, its key, the trust bundle). Empty: the
	// sidecar's mesh identity from the control plane's CA.
	CertFile string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	CAFile   string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
}

// ClusterTLS configures mTLS from the proxy to a cluster's endpoints.
type ClusterTLS struct {
	// Mode: "mtls" (default when tls is present) or "disabled".
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// ServerIDs are the SPIFFE IDs the server may have: exact IDs or
	// namespace wildcards (spiffe://td/ns/payments/*). Empty: any ID in
	// the trust domain.
	ServerIDs  []string `yaml:"server_ids,omitempty" json:"server_ids,omitempty"`
	MinVersion string   `yaml:"min_version,omitempty" json:"min_version,omitempty"`
	// CertFile, KeyFile, CAFile: as in a listener's tls.
	CertFile string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	CAFile   string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
}

// Authz is a listener's authorization policy. A request matching a deny
// rule is refused (deny wins); otherwise one matching an allow rule is
// allowed; otherwise Default decides. A refusal is a 403 with header
// x-weft-authz: denied:RULE (denied:default when no rule matched).
type Authz struct {
	// Default is "allow" (default) or "deny".
	Default string `yaml:"default,omitempty" json:"default,omitempty"`
	// RequestPrincipalHeader carries the JWT principal an auth filter
	// verified (default x-weft-jwt-sub). The proxy removes it from the
	// downstream request before the filters run, so only a filter can set
	// it.
	RequestPrincipalHeader string      `yaml:"request_principal_header,omitempty" json:"request_principal_header,omitempty"`
	Rules                  []AuthzRule `yaml:"rules,omitempty" json:"rules,omitempty"`
	// DryRun is a policy checked, after this one, on the requests this one
	// allows; what it would refuse is logged and counted
	// (weft_authz_dry_run_denied_total), never refused. It is how a new
	// policy is tried on live traffic.
	DryRun *DryRunAuthz `yaml:"dry_run,omitempty" json:"dry_run,omitempty"`
}

// DryRunAuthz is an Authz tried without being enforced (Authz.DryRun); it
// reads the request principal from its policy's header.
type DryRunAuthz struct {
	Default string      `yaml:"default,omitempty" json:"default,omitempty"`
	Rules   []AuthzRule `yaml:"rules,omitempty" json:"rules,omitempty"`
}

// AuthzRule matches requests; every set condition must hold, and a list
// condition holds when any of its entries matches.
type AuthzRule struct {
	Name string `yaml:"name" json:"name"`
	// Action is "allow" or "deny".
	Action string `yaml:"action" json:"action"`
	// Principals are peer SPIFFE IDs: exact, a namespace wildcard
	// (spiffe://td/ns/payments/*) or "*" (any mTLS peer).
	Principals []string `yaml:"principals,omitempty" json:"principals,omitempty"`
	// RequestPrincipals are JWT principals: exact, PREFIX* or "*" (any).
	RequestPrincipals []string `yaml:"request_principals,omitempty" json:"request_principals,omitempty"`
	Methods           []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	// Paths are exact ("/health"), prefixes ending in "*" ("/api/*"), or
	// globs where "*" matches within one segment and "**" across
	// segments ("/users/*/orders", "/v1/**/status").
	Paths   []string        `yaml:"paths,omitempty" json:"paths,omitempty"`
	Headers []HeaderMatcher `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Ports are destination (listener) ports.
	Ports []int `yaml:"ports,omitempty" json:"ports,omitempty"`
}
