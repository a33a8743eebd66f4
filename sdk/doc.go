// Package sdk is Weft's Go guest SDK: write Proxy-Wasm (ABI 0.2.1) HTTP
// filters in Go and build them with the stock toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o filter.wasm ./myfilter
//
// A filter is a main package (with an empty main) that registers a plugin
// constructor in init:
//
//	func main() {}
//	func init() { sdk.Register(newPlugin) }
//
//	func newPlugin(config []byte) (sdk.Plugin, error) { ... }
//
// The constructor receives the filter's configuration (JSON for YAML
// configs) once per VM and returns a Plugin, whose NewHTTPFilter makes one
// value per stream. That value implements only the callbacks it needs —
// RequestHeadersFilter, RequestBodyFilter, ResponseHeadersFilter,
// ResponseBodyFilter, the trailer variants, LogFilter, DoneFilter,
// HTTPCallReceiver — the SDK checks which by type assertion. A Plugin may
// also implement Ticker (SetTickPeriod), QueueReceiver, HTTPCallReceiver
// and PluginCloser.
//
// Network (L4) filters on tcp listeners: a Plugin that implements
// NetworkPlugin makes one NetworkFilter per connection; that value
// implements any of NewConnectionFilter, DownstreamDataFilter,
// UpstreamDataFilter, DownstreamCloseFilter, UpstreamCloseFilter and
// ConnectionDoneFilter, and reads and rewrites the bytes through its
// *Connection (DownstreamData, SetDownstreamData, UpstreamData,
// SetUpstreamData, Close).
//
// Plugins that share one VM each have a root context: RegisterRoot (instead
// of Register) tells the constructor its root context id, Stream.RootID and
// Connection.RootID name the root of a context, and RegisterVMStart runs
// once when the VM starts.
//
// Through a *Stream a filter reads and edits headers (HeaderMap: Get, Set,
// Add, Remove, All, Replace; pseudo-headers :method, :path, :authority,
// :scheme, :status included), bodies, and properties; answers locally
// (SendLocalResponse); pauses (return Pause) and resumes (Resume) — from an
// HTTP call-out's answer (DispatchHTTPCall), a tick, or a queue
// notification. Package functions cover shared data with CAS
// (GetSharedData, SetSharedData), shared queues, metrics (NewCounter,
// NewGauge, NewHistogram; MetricBatch sends several updates in one host
// call on Weft, weft.record_metrics), logging (Infof, ...), the host clock (Now) and
// host-specific foreign functions (CallForeignFunction; Weft offers
// "weft.verify_signature", other hosts answer IsForeignFunctionMissing).
//
// Properties follow Envoy's attribute names, e.g. Property("request",
// "path"), Property("response", "code") (8-byte little-endian integers:
// PropertyInt64), Property("route_name"), Property("plugin_name"),
// Property("node", "metadata", "key"). A filter that reads the same
// properties on every stream builds a PropertyQuery once and reads them
// with Stream.Properties: one host call on Weft (weft.get_properties)
// instead of one call and one allocation per property.
//
// The same code runs natively under `go test`: outside GOOS=wasip1 the host
// calls go to the emulated host of package sdk/sdktest, so filter logic is
// unit-tested without building Wasm; sdk/filtertest runs the built module
// in Weft's real host.
//
// A panic in an HTTP callback is recovered: the SDK logs it at critical
// level and answers the stream with a 500 local response, so one bad request
// does not take the VM down. A panic in a network callback traps the VM, so
// the host applies the filter's failure policy to the connection.
//
// The SDK owns the guest side of the ABI: exports, the context table, the
// encoding of maps and paths. It must not import net/http or other heavy
// packages (every byte ends up in each filter), keep per-stream state after
// a stream is deleted, or block inside a callback.
package sdk
