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
	shared     HTTPFilter
	sharedKind *filterKind
	// network is the plugin as a NetworkPlugin (nil: it is not one).
	network NetworkPlugin
	// kind is the kind of the root's last stream filter, kinds every
	// kind its streams had.
	kind  *filterKind
	kinds []*filterKind
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
	lastRoot  *rootContext // the root rootOf found last
	streams   streamTable
	// contextless is the record of the stream a callback of the
	// noContext root's runs for, contextlessStream its handle.
	contextless       streamRec
	contextlessStream Stream
	conns             map[uint32]*Connection
	calls             map[uint32]pendingCall
	grpc              map[uint32]*grpcPending
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
	vm.lastRoot = nil
	vm.streams = streamTable{}
	vm.contextless = streamRec{}
	vm.contextlessStream = Stream{slot: contextlessSlot}
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

// rootOf returns root context id's state (nil: id is no root).
func rootOf(id uint32) *rootContext {
	if r := vm.lastRoot; r != nil && r.id == id {
		return r
	}
	r := vm.roots[id]
	if r != nil {
		vm.lastRoot = r
	}
	return r
}

func onContextCreate(id, parent uint32) {
	enter(id)
	if parent == 0 {
		vm.roots[id] = &rootContext{id: id}
		return
	}
	r := rootOf(parent)
	// A connection of a tcp listener declares no stream callbacks: the
	// host calls every network callback.
	if r != nil && r.network != nil && newConnection(r, id) {
		return
	}
	rec, s := newStreamRec(id, parent)
	if r == nil {
		return
	}
	if r.plugin != nil {
		newFilter(r.plugin, s, rec)
	}
	k := r.kindOf(rec.filter)
	rec.kind = k
	if k == nil {
		declareCallbacks(r, 0)
		return
	}
	bits := k.bits
	if k.statelessType && stateless(rec.filter) && (vm.noContext == nil || vm.noContext == r) {
		r.shared = rec.filter
		r.sharedKind = k
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

func newFilter(p Plugin, s *Stream, r *streamRec) {
	ok := false
	defer func() {
		if !ok {
			panicStream(recover(), s, "NewHTTPFilter")
		}
	}()
	r.filter = p.NewHTTPFilter(s)
	ok = true
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
	r.network, _ = p.(NetworkPlugin)
	return true
}

func onTick(root uint32) {
	enter(root)
	r := rootOf(root)
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

// streamFor enters a stream callback: it returns the stream's record and
// handle if its filter is set.
func streamFor(id uint32) (*streamRec, *Stream) {
	enter(id)
	r := vm.streams.get(id)
	if r == nil {
		return contextless(id)
	}
	if r.kind == nil {
		return nil, nil
	}
	return r, r.s
}

// contextless returns the record and handle for a callback of context id
// the host never created: a stream of the root whose StatelessFilter serves
// such streams (callbackNoContext). They serve this callback only: the
// next contextless callback reuses them.
func contextless(id uint32) (*streamRec, *Stream) {
	r := vm.noContext
	// A connection's id is never a contextless stream's; with no
	// connections (an HTTP filter's VM) there is nothing to look up.
	if r == nil || r.shared == nil || len(vm.conns) != 0 && vm.conns[id] != nil {
		return nil, nil
	}
	s := &vm.contextlessStream
	s.id, s.root = id, r.id
	rec := &vm.contextless
	rec.s, rec.filter, rec.kind, rec.id, rec.contextless = s, r.shared, r.sharedKind, id, true
	return rec, s
}

func onRequestHeaders(id, n uint32, eos bool) (a uint32) {
	r, s := streamFor(id)
	if r == nil {
		return uint32(Continue)
	}
	r.phase = streamRequest
	if tab := r.kind.tabs[cbRequestHeaders]; tab != nil {
		ok := false
		defer func() {
			if !ok {
				panicAction(recover(), s, "OnRequestHeaders", &a)
			}
		}()
		a = uint32(as[RequestHeadersFilter](tab, r.filter).OnRequestHeaders(s, eos))
		ok = true
		return a
	}
	return uint32(Continue)
}

func onRequestBody(id, size uint32, eos bool) (a uint32) {
	r, s := streamFor(id)
	if r == nil {
		return uint32(Continue)
	}
	r.phase = streamRequest
	if tab := r.kind.tabs[cbRequestBody]; tab != nil {
		ok := false
		defer func() {
			if !ok {
				panicAction(recover(), s, "OnRequestBody", &a)
			}
		}()
		a = uint32(as[RequestBodyFilter](tab, r.filter).OnRequestBody(s, int(size), eos))
		ok = true
		return a
	}
	return uint32(Continue)
}

func onRequestTrailers(id, n uint32) (a uint32) {
	r, s := streamFor(id)
	if r == nil {
		return uint32(Continue)
	}
	r.phase = streamRequest
	if tab := r.kind.tabs[cbRequestTrailers]; tab != nil {
		ok := false
		defer func() {
			if !ok {
				panicAction(recover(), s, "OnRequestTrailers", &a)
			}
		}()
		a = uint32(as[RequestTrailersFilter](tab, r.filter).OnRequestTrailers(s, int(n)))
		ok = true
		return a
	}
	return uint32(Continue)
}

func onResponseHeaders(id, n uint32, eos bool) (a uint32) {
	r, s := streamFor(id)
	if r == nil {
		return uint32(Continue)
	}
	r.phase = streamResponse
	if tab := r.kind.tabs[cbResponseHeaders]; tab != nil {
		ok := false
		defer func() {
			if !ok {
				panicAction(recover(), s, "OnResponseHeaders", &a)
			}
		}()
		a = uint32(as[ResponseHeadersFilter](tab, r.filter).OnResponseHeaders(s, eos))
		ok = true
		return a
	}
	return uint32(Continue)
}

func onResponseBody(id, size uint32, eos bool) (a uint32) {
	r, s := streamFor(id)
	if r == nil {
		return uint32(Continue)
	}
	r.phase = streamResponse
	if tab := r.kind.tabs[cbResponseBody]; tab != nil {
		ok := false
		defer func() {
			if !ok {
				panicAction(recover(), s, "OnResponseBody", &a)
			}
		}()
		a = uint32(as[ResponseBodyFilter](tab, r.filter).OnResponseBody(s, int(size), eos))
		ok = true
		return a
	}
	return uint32(Continue)
}

func onResponseTrailers(id, n uint32) (a uint32) {
	r, s := streamFor(id)
	if r == nil {
		return uint32(Continue)
	}
	r.phase = streamResponse
	if tab := r.kind.tabs[cbResponseTrailers]; tab != nil {
		ok := false
		defer func() {
			if !ok {
				panicAction(recover(), s, "OnResponseTrailers", &a)
			}
		}()
		a = uint32(as[ResponseTrailersFilter](tab, r.filter).OnResponseTrailers(s, int(n)))
		ok = true
		return a
	}
	return uint32(Continue)
}

func onLog(id uint32) {
	if len(vm.conns) != 0 {
		if c := connFor(id); c != nil {
			connLog(c)
			return
		}
	}
	r, s := streamFor(id)
	if r == nil {
		return
	}
	if tab := r.kind.tabs[cbLog]; tab != nil {
		ok := false
		defer func() {
			if !ok {
				panicStream(recover(), s, "OnLog")
			}
		}()
		as[LogFilter](tab, r.filter).OnLog(s)
		ok = true
	}
}

func onDone(id uint32) bool {
	enter(id)
	rec := vm.streams.get(id)
	if rec == nil {
		if r := rootOf(id); r != nil {
			if c, ok := r.plugin.(PluginCloser); ok {
				defer recoverRoot("OnPluginDone")
				c.OnPluginDone()
			}
			return true
		}
		rec, _ = contextless(id)
	}
	if rec == nil || rec.kind == nil {
		return true
	}
	if tab := rec.kind.tabs[cbDone]; tab != nil {
		ok := false
		defer func() {
			if !ok {
				panicStream(recover(), rec.s, "OnDone")
			}
		}()
		as[DoneFilter](tab, rec.filter).OnDone(rec.s)
		ok = true
	}
	return true
}

func onDelete(id uint32) {
	if vm.effective == id {
		vm.effective = 0
	}
	if s := vm.streams.get(id); s != nil {
		if s.calls > 0 {
			for tok, c := range vm.calls {
				if c.ctx == id {
					delete(vm.calls, tok)
				}
			}
		}
		endStream(s)
		return
	}
	if len(vm.conns) != 0 {
		if c := vm.conns[id]; c != nil {
			delete(vm.conns, id)
			c.gone = true
			c.filter = nil
			return
		}
	}
	if r, ok := vm.roots[id]; ok {
		if vm.noContext == r {
			vm.noContext = nil
		}
		if vm.lastRoot == r {
			vm.lastRoot = nil
		}
		delete(vm.roots, id)
	}
}

// The hot callbacks defer a function that calls recover only when the
// callback did not return (a panic): in a Go guest a deferred recover call
// on every callback is a measurable part of a no-op stream.

// panicAction turns a panic in a header/body callback (e, recovered by the
// caller's deferred function; nil: none) into a 500 local response, so one
// bad request does not take the VM down.
func panicAction(e any, s *Stream, where string, a *uint32) {
	if e != nil {
		Criticalf("%s panicked: %v", where, e)
		_ = s.SendLocalResponse(500, []byte("filter error\n"), nil)
		*a = uint32(Pause)
	}
}

// panicStream logs a panic in another stream callback (e, recovered by the
// caller; nil: none).
func panicStream(e any, s *Stream, where string) {
	if e != nil {
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
