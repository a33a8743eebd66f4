package sdk

import "github.com/weftmesh/weft/sdk/internal/abi"

// Proxy-Wasm enumerations the SDK uses.
const (
	mapRequestHeaders       = 0
	mapRequestTrailers      = 1
	mapResponseHeaders      = 2
	mapResponseTrailers     = 3
	mapHTTPCallRespHeaders  = 6
	mapHTTPCallRespTrailers = 7

	bufRequestBody      = 0
	bufResponseBody     = 1
	bufHTTPCallRespBody = 4
	bufVMConfig         = 6
	bufPluginConfig     = 7

	streamRequest  = 0
	streamResponse = 1
)

// rootContext is a plugin's root context in this VM.
type rootContext struct {
	id     uint32
	plugin Plugin
	// callbacks are the stream callbacks last declared to the host for
	// this root's streams (declareCallbacks), valid when declared is set.
	callbacks uint32
	declared  bool
	// shared serves the root's streams the host creates no context for
	// (a StatelessFilter, declared with callbackNoContext).
	shared HTTPFilter
	// sharedHeaders is shared as a RequestHeadersFilter (nil: it is not
	// one), asserted once instead of on every contextless request.
	sharedHeaders RequestHeadersFilter
}

// pendingCall is an HTTP call waiting for its answer.
type pendingCall struct {
	ctx uint32
	cb  func(*HTTPCallResponse)
}

// vm is the guest's state: a Wasm instance is single-threaded, and every
// callback runs to completion, so no locking.
var vm struct {
	newPlugin func(root uint32, config []byte) (Plugin, error)
	onVMStart func(vmConfig []byte) error
	roots     map[uint32]*rootContext
	streams   streamTable
	conns     map[uint32]*Connection
	calls     map[uint32]pendingCall
	grpc      map[uint32]*grpcPending
	// effective is the context host calls act on now.
	effective uint32
	vmConfig  []byte
	logLevel  LogLevel
	// noContext is the one root whose streams the host does not create
	// (callbackNoContext): a callback for a context the VM never saw is
	// one of its streams.
	noContext *rootContext
}

func init() {
	resetVM()
	abi.Exports = abi.Guest{
		OnContextCreate:        onContextCreate,
		OnVMStart:              onVMStart,
		OnConfigure:            onConfigure,
		OnTick:                 onTick,
		OnQueueReady:           onQueueReady,
		OnRequestHeaders:       onRequestHeaders,
		OnRequestBody:          onRequestBody,
		OnRequestTrailers:      onRequestTrailers,
		OnResponseHeaders:      onResponseHeaders,
		OnResponseBody:         onResponseBody,
		OnResponseTrailers:     onResponseTrailers,
		OnHTTPCallResponse:     onHTTPCallResponse,
		OnGRPCInitialMetadata:  onGRPCInitialMetadata,
		OnGRPCReceive:          onGRPCReceive,
		OnGRPCTrailingMetadata: onGRPCTrailingMetadata,
		OnGRPCClose:            onGRPCClose,
		OnNewConnection:        onNewConnection,
		OnDownstreamData:       onDownstreamData,
		OnUpstreamData:         onUpstreamData,
		OnDownstreamClose:      onDownstreamClose,
		OnUpstreamClose:        onUpstreamClose,
		OnLog:                  onLog,
		OnDone:                 onDone,
		OnDelete:               onDelete,
		Reset:                  resetVM,
		Plugin: func(root uint32) any {
			if r := vm.roots[root]; r != nil && r.plugin != nil {
				return r.plugin
			}
			return nil
		},
	}
}

func resetVM() {
	vm.roots = make(map[uint32]*rootContext)
	vm.streams = streamTable{}
	vm.conns = make(map[uint32]*Connection)
	vm.calls = make(map[uint32]pendingCall)
	vm.grpc = make(map[uint32]*grpcPending)
	vm.effective = 0
	vm.vmConfig = nil
	vm.logLevel = LogInfo
	vm.noContext = nil
	noCallbacksHost = false
	noEditHeadersHost = false
	noRecordMetricsHost = false
}

// enter records that a callback for context id runs now: the host's
// effective context is id.
func enter(id uint32) { vm.effective = id }

// activate makes id the context host calls act on.
func activate(id uint32) {
	if vm.effective != id {
		abi.SetEffectiveContext(id)
		vm.effective = id
	}
}

func onContextCreate(id, parent uint32) {
	enter(id)
	if parent == 0 {
		vm.roots[id] = &rootContext{id: id}
		return
	}
	r := vm.roots[parent]
	// A connection of a tcp listener declares no stream callbacks: the
	// host calls every network callback.
	if r != nil && r.plugin != nil && newConnection(r, id) {
		return
	}
	s := newStream(id, parent)
	vm.streams.put(s)
	if r == nil {
		return
	}
	if r.plugin != nil {
		newFilter(r.plugin, s)
	}
	bits := callbacksOf(s.filter)
	if stateless(s.filter) && (vm.noContext == nil || vm.noContext == r) {
		r.shared = s.filter
		r.sharedHeaders, _ = s.filter.(RequestHeadersFilter)
		bits |= callbackNoContext
	}
	declareCallbacks(r, bits)
	if r.declared && r.callbacks&callbackNoContext != 0 {
		vm.noContext = r
	}
}

// stateless reports whether f is a StatelessFilter that says so.
func stateless(f HTTPFilter) (ok bool) {
	sf, is := f.(StatelessFilter)
	if !is {
		return false
	}
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return sf.Stateless()
}

func newFilter(p Plugin, s *Stream) {
	defer recoverStream(s, "NewHTTPFilter")
	s.filter = p.NewHTTPFilter(s)
}

func onVMStart(root, size uint32) (ok bool) {
	enter(root)
	if lvl, st := abi.GetLogLevel(); st == 0 {
		vm.logLevel = LogLevel(lvl)
	}
	if size > 0 {
		b, st := abi.GetBufferBytes(bufVMConfig, 0, size)
		if st != 0 {
			Errorf("reading the VM configuration: %v", Status(st))
			return false
		}
		vm.vmConfig = b
	}
	if vm.onVMStart == nil {
		return true
	}
	defer func() {
		if e := recover(); e != nil {
			Criticalf("VM start panicked: %v", e)
			ok = false
		}
	}()
	if err := vm.onVMStart(vm.vmConfig); err != nil {
		Errorf("VM start refused: %v", err)
		return false
	}
	return true
}

func onConfigure(root, size uint32) (ok bool) {
	enter(root)
	// Plugins sharing the VM may each have their own level (weft's
	// log_level): keep the lowest, so no plugin's lines are dropped here;
	// the host drops what a plugin's own level does not let through.
	if lvl, st := abi.GetLogLevel(); st == 0 && LogLevel(lvl) < vm.logLevel {
		vm.logLevel = LogLevel(lvl)
	}
	r := vm.roots[root]
	if r == nil {
		r = &rootContext{id: root}
		vm.roots[root] = r
	}
	if vm.newPlugin == nil {
		Criticalf("no plugin registered: call sdk.Register from an init function")
		return false
	}
	var cfg []byte
	if size > 0 {
		b, st := abi.GetBufferBytes(bufPluginConfig, 0, size)
		if st != 0 {
			Errorf("reading the plugin configuration: %v", Status(st))
			return false
		}
		cfg = b
	}
	defer func() {
		if e := recover(); e != nil {
			Criticalf("plugin constructor panicked: %v", e)
			ok = false
		}
	}()
	p, err := vm.newPlugin(root, cfg)
	if err != nil {
		Errorf("configuration refused: %v", err)
		return false
	}
	if p == nil {
		Errorf("configuration refused: the constructor returned no plugin")
		return false
	}
	r.plugin = p
	return true
}

func onTick(root uint32) {
	enter(root)
	r := vm.roots[root]
	if r == nil || r.plugin == nil {
		return
	}
	if t, ok := r.plugin.(Ticker); ok {
		defer recoverRoot("OnTick")
		t.OnTick()
	}
}

func onQueueReady(root, queue uint32) {
	enter(root)
	r := vm.roots[root]
	if r == nil || r.plugin == nil {
		return
	}
	if q, ok := r.plugin.(QueueReceiver); ok {
		defer recoverRoot("OnQueueReady")
		q.OnQueueReady(Queue(queue))
	}
}

// streamFor enters a stream callback: it returns the stream if its filter
// is set.
func streamFor(id uint32) *Stream {
	enter(id)
	s := vm.streams.get(id)
	if s == nil {
		return contextless(id)
	}
	if s.filter == nil {
		return nil
	}
	return s
}

// contextless returns a Stream for a callback of context id the host never
// created: a stream of the root whose StatelessFilter serves such streams
// (callbackNoContext). The Stream lives for this callback only.
func contextless(id uint32) *Stream {
	r := vm.noContext
	// A connection's id is never a contextless stream's; with no
	// connections (an HTTP filter's VM) there is nothing to look up.
	if r == nil || r.shared == nil || len(vm.conns) != 0 && vm.conns[id] != nil {
		return nil
	}
	s := newStream(id, r.id)
	s.filter = r.shared
	s.contextless = true
	return s
}

func onRequestHeaders(id, n uint32, eos bool) (a uint32) {
	s := streamFor(id)
	if s == nil {
		return uint32(Continue)
	}
	s.phase = streamRequest
	var f RequestHeadersFilter
	if s.contextless {
		f = vm.noContext.sharedHeaders
	} else {
		f, _ = s.filter.(RequestHeadersFilter)
	}
	if f != nil {
		defer recoverAction(s, "OnRequestHeaders", &a)
		return uint32(f.OnRequestHeaders(s, eos))
	}
	return uint32(Continue)
}

func onRequestBody(id, size uint32, eos bool) (a uint32) {
	s := streamFor(id)
	if s == nil {
		return uint32(Continue)
	}
	s.phase = streamRequest
	if f, ok := s.filter.(RequestBodyFilter); ok {
		defer recoverAction(s, "OnRequestBody", &a)
		return uint32(f.OnRequestBody(s, int(size), eos))
	}
	return uint32(Continue)
}

func onRequestTrailers(id, n uint32) (a uint32) {
	s := streamFor(id)
	if s == nil {
		return uint32(Continue)
	}
	s.phase = streamRequest
	if f, ok := s.filter.(RequestTrailersFilter); ok {
		defer recoverAction(s, "OnRequestTrailers", &a)
		return uint32(f.OnRequestTrailers(s, int(n)))
	}
	return uint32(Continue)
}

func onResponseHeaders(id, n uint32, eos bool) (a uint32) {
	s := streamFor(id)
	if s == nil {
		return uint32(Continue)
	}
	s.phase = streamResponse
	if f, ok := s.filter.(ResponseHeadersFilter); ok {
		defer recoverAction(s, "OnResponseHeaders", &a)
		return uint32(f.OnResponseHeaders(s, eos))
	}
	return uint32(Continue)
}

func onResponseBody(id, size uint32, eos bool) (a uint32) {
	s := streamFor(id)
	if s == nil {
		return uint32(Continue)
	}
	s.phase = streamResponse
	if f, ok := s.filter.(ResponseBodyFilter); ok {
		defer recoverAction(s, "OnResponseBody", &a)
		return uint32(f.OnResponseBody(s, int(size), eos))
	}
	return uint32(Continue)
}

func onResponseTrailers(id, n uint32) (a uint32) {
	s := streamFor(id)
	if s == nil {
		return uint32(Continue)
	}
	s.phase = streamResponse
	if f, ok := s.filter.(ResponseTrailersFilter); ok {
		defer recoverAction(s, "OnResponseTrailers", &a)
		return uint32(f.OnResponseTrailers(s, int(n)))
	}
	return uint32(Continue)
}

func onLog(id uint32) {
	if c := connFor(id); c != nil {
		connLog(c)
		return
	}
	s := streamFor(id)
	if s == nil {
		return
	}
	if f, ok := s.filter.(LogFilter); ok {
		defer recoverStream(s, "OnLog")
		f.OnLog(s)
	}
}

func onDone(id uint32) bool {
	enter(id)
	if r := vm.roots[id]; r != nil {
		if c, ok := r.plugin.(PluginCloser); ok {
			defer recoverRoot("OnPluginDone")
			c.OnPluginDone()
		}
		return true
	}
	s := vm.streams.get(id)
	if s == nil {
		s = contextless(id)
	}
	if s == nil || s.filter == nil {
		return true
	}
	if f, ok := s.filter.(DoneFilter); ok {
		defer recoverStream(s, "OnDone")
		f.OnDone(s)
	}
	return true
}

func onDelete(id uint32) {
	if vm.effective == id {
		vm.effective = 0
	}
	if r, ok := vm.roots[id]; ok {
		if vm.noContext == r {
			vm.noContext = nil
		}
		delete(vm.roots, id)
		return
	}
	if c := vm.conns[id]; c != nil {
		delete(vm.conns, id)
		c.gone = true
		c.filter = nil
		return
	}
	s := vm.streams.get(id)
	if s == nil {
		return
	}
	vm.streams.remove(id)
	s.gone = true
	if s.calls > 0 {
		for tok, c := range vm.calls {
			if c.ctx == id {
				delete(vm.calls, tok)
			}
		}
	}
	s.filter = nil
}

// recoverAction turns a panic in a header/body callback into a 500 local
// response, so one bad request does not take the VM down.
func recoverAction(s *Stream, where string, a *uint32) {
	if e := recover(); e != nil {
		Criticalf("%s panicked: %v", where, e)
		_ = s.SendLocalResponse(500, []byte("filter error\n"), nil)
		*a = uint32(Pause)
	}
}

func recoverStream(s *Stream, where string) {
	if e := recover(); e != nil {
		Criticalf("stream %d: %s panicked: %v", s.id, where, e)
	}
}

func recoverRoot(where string) {
	if e := recover(); e != nil {
		Criticalf("%s panicked: %v", where, e)
	}
}

// VMConfig returns the VM configuration (the filter's vm_config).
func VMConfig() []byte { return vm.vmConfig }
