package sdk

import (
	"strconv"
)

// Action is what a header, body or trailer callback tells the host.
type Action uint32

const (
	// Continue lets the stream go on to the next filter.
	Continue Action = 0
	// Pause holds the stream until the filter calls Stream.Resume or sends a
	// local response (from a later callback: an HTTP call-out's answer, a
	// tick, a queue notification).
	Pause Action = 1
)

// Status is a Proxy-Wasm host call result. Every non-OK Status is an error;
// compare with errors.Is(err, sdk.StatusNotFound).
type Status uint32

// Proxy-Wasm statuses.
const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusBadExpression        Status = 5
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCasMismatch          Status = 8
	StatusResultMismatch       Status = 9
	StatusInternalFailure      Status = 10
	StatusBrokenConnection     Status = 11
	StatusUnimplemented        Status = 12
)

var statusNames = [...]string{"ok", "not found", "bad argument", "serialization failure", "parse failure",
	"bad expression", "invalid memory access", "empty", "cas mismatch", "result mismatch",
	"internal failure", "broken connection", "unimplemented"}

// Error implements error.
func (s Status) Error() string {
	if int(s) < len(statusNames) {
		return "proxy-wasm: " + statusNames[s]
	}
	return "proxy-wasm: status " + strconv.Itoa(int(s))
}

// statusErr turns a host call result into an error (nil for OK).
func statusErr(st uint32) error {
	if st == 0 {
		return nil
	}
	return Status(st)
}

// Plugin is a configured filter: one per VM (the root context). The host
// asks it for one HTTP filter per stream.
//
// A Plugin may also implement Ticker (with SetTickPeriod), QueueReceiver,
// HTTPCallReceiver, PluginCloser and NetworkPlugin (network filters on tcp
// listeners). Several Plugins may share one VM, each in a root context of
// its own (RegisterRoot tells the constructor its id).
type Plugin interface {
	// NewHTTPFilter returns the filter for one stream, or nil to let the
	// stream pass untouched. The value implements any of the callback
	// interfaces (RequestHeadersFilter, ResponseBodyFilter, LogFilter, ...):
	// the SDK calls only those it implements.
	NewHTTPFilter(s *Stream) HTTPFilter
}

// HTTPFilter is one stream's filter: any value implementing some of
// RequestHeadersFilter, RequestBodyFilter, RequestTrailersFilter,
// ResponseHeadersFilter, ResponseBodyFilter, ResponseTrailersFilter,
// HTTPCallReceiver, LogFilter and DoneFilter.
type HTTPFilter interface{}

// RequestHeadersFilter sees the request headers (Stream.RequestHeaders).
// endOfStream is true when the request has no body.
type RequestHeadersFilter interface {
	OnRequestHeaders(s *Stream, endOfStream bool) Action
}

// RequestBodyFilter sees the request body; size is the buffered size so far.
type RequestBodyFilter interface {
	OnRequestBody(s *Stream, size int, endOfStream bool) Action
}

// RequestTrailersFilter sees the request trailers.
type RequestTrailersFilter interface {
	OnRequestTrailers(s *Stream, numTrailers int) Action
}

// ResponseHeadersFilter sees the response headers (upstream's or a local
// reply's).
type ResponseHeadersFilter interface {
	OnResponseHeaders(s *Stream, endOfStream bool) Action
}

// ResponseBodyFilter sees the response body.
type ResponseBodyFilter interface {
	OnResponseBody(s *Stream, size int, endOfStream bool) Action
}

// ResponseTrailersFilter sees the response trailers.
type ResponseTrailersFilter interface {
	OnResponseTrailers(s *Stream, numTrailers int) Action
}

// LogFilter runs once the stream is complete (for access logs and metrics).
type LogFilter interface {
	OnLog(s *Stream)
}

// DoneFilter runs when the stream ends, aborted streams included.
type DoneFilter interface {
	OnDone(s *Stream)
}

// StatelessFilter is a filter one value of which may serve every stream of
// its plugin. When the value NewHTTPFilter returns says Stateless, Weft
// stops creating and deleting a context in the VM for the plugin's later
// streams there (weft.stream_callbacks, docs/wasm.md) and the SDK calls
// that same value for them: two entries into the VM fewer per stream. The
// plugin's later streams in that VM all get that value, whatever
// NewHTTPFilter would return. Other hosts (Envoy) call NewHTTPFilter for
// every stream as before.
//
// A stateless filter keeps nothing per stream, uses the *Stream only
// during its callback (it does not keep it, resume it later, or dispatch
// an HTTP or gRPC call-out from it), and returns Pause only after
// SendLocalResponse. In each VM one plugin at most is served this way (the
// first to ask); the others keep a context per stream.
type StatelessFilter interface {
	HTTPFilter
	Stateless() bool
}

// HTTPCallReceiver receives the answers of HTTP calls dispatched with a nil
// callback from its context (a stream's filter, or the Plugin for calls made
// outside streams).
type HTTPCallReceiver interface {
	OnHTTPCallResponse(token uint32, resp *HTTPCallResponse)
}

// Ticker is a Plugin that runs every tick period (SetTickPeriod).
type Ticker interface {
	OnTick()
}

// QueueReceiver is a Plugin notified when an item is enqueued on a queue it
// registered.
type QueueReceiver interface {
	OnQueueReady(q Queue)
}

// PluginCloser is a Plugin told that its VM is shutting down.
type PluginCloser interface {
	OnPluginDone()
}

// NewPluginFunc builds a Plugin from its configuration (the filter's
// `config:` as JSON, or a string as is). An error refuses the configuration:
// the host does not start the filter.
type NewPluginFunc func(config []byte) (Plugin, error)

// Register installs the plugin constructor. Call it from an init function of
// the filter's main package (c-shared modules do not run main).
func Register(newPlugin NewPluginFunc) {
	vm.newPlugin = func(_ uint32, config []byte) (Plugin, error) { return newPlugin(config) }
}

// NewRootPluginFunc is NewPluginFunc told the plugin's root context id.
// Plugins that share one VM (weft's share_vms) each have a root context of
// their own, with its own id, configuration and plugin_name property; the
// id is how the guest's code tells them apart.
type NewRootPluginFunc func(rootID uint32, config []byte) (Plugin, error)

// RegisterRoot installs a plugin constructor that is told the root context
// id of each plugin it builds (instead of Register).
func RegisterRoot(newPlugin NewRootPluginFunc) {
	vm.newPlugin = newPlugin
}

// RegisterVMStart installs f to run once when the VM starts
// (proxy_on_vm_start), before any plugin is configured, with the VM
// configuration (vm_config). An error refuses the VM. Plugins sharing the
// VM see one VM start.
func RegisterVMStart(f func(vmConfig []byte) error) {
	vm.onVMStart = f
}
