package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/wasm/interrupt"
)

var (
	errGuestAbort    = errors.New("guest called abort")
	errVMBroken      = errors.New("vm is broken")
	errPauseTimeout  = errors.New("paused stream was not resumed in time")
	errNoVM          = errors.New("no healthy vm")
	errCallbackStuck = errors.New("callback deadline exceeded")
	errOverloaded    = errors.New("too many streams wait for the vm")
	errAllocReentry  = errors.New("guest allocator called a host function that allocates (re-entry refused)")
)

// abiVersion is the Proxy-Wasm ABI a module speaks.
type abiVersion uint8

const (
	abi010 abiVersion = iota + 1
	abi020
	abi021
)

func (a abiVersion) String() string {
	switch a {
	case abi010:
		return "0.1.0"
	case abi020:
		return "0.2.0"
	case abi021:
		return "0.2.1"
	}
	return "unknown"
}

// detectABI reads the version marker export.
func detectABI(exports map[string]api.FunctionDefinition) (abiVersion, error) {
	switch {
	case exports["proxy_abi_version_0_2_1"] != nil:
		return abi021, nil
	case exports["proxy_abi_version_0_2_0"] != nil:
		return abi020, nil
	case exports["proxy_abi_version_0_1_0"] != nil:
		return abi010, nil
	}
	for name := range exports {
		if strings.HasPrefix(name, "proxy_abi_version_") {
			return 0, fmt.Errorf("unsupported Proxy-Wasm ABI version %q (this host speaks 0.2.1, 0.2.0, 0.1.0)", strings.TrimPrefix(name, "proxy_abi_version_"))
		}
	}
	return 0, errors.New("module exports no proxy_abi_version_* function: not a Proxy-Wasm module")
}

// guestFunc is an exported guest function with its arity cached.
type guestFunc struct {
	f          api.Function
	np, nr     int
	stackWidth int
	// via is the dispatcher's selector + 1 when the call goes through
	// the module's weft_dispatch (0: called directly). See vm.dispatch.
	via uint8
}

func lookup(mod api.Module, name string) *guestFunc {
	f := mod.ExportedFunction(name)
	if f == nil {
		return nil
	}
	d := f.Definition()
	g := &guestFunc{f: f, np: len(d.ParamTypes()), nr: len(d.ResultTypes())}
	g.stackWidth = max(g.np, g.nr)
	return g
}

// vm is one instance of a plugin's module. Every call into it holds mu;
// host functions run inside such calls, so they touch vm state freely.
type vm struct {
	// p is the plugin whose context runs now (guarded by mu; VMs may be
	// shared, see group.go).
	p    *Plugin
	slot *slot
	mod  api.Module
	mem  api.Memory
	// linear keeps the linear memory's reservation mapped as long as the
	// VM can be reached (memory_unix.go).
	linear any

	vmDeadline

	mu      sync.Mutex
	waiters atomic.Int32 // streams waiting for mu (lockQueued)
	broken  bool         // guarded by mu
	closed  bool         // guarded by mu
	stack   [8]uint64
	// ctx is the context of every call into the guest (vmContext): it
	// carries the vm to host functions and is never done (a call that
	// overruns its deadline is stopped by the Runtime's watchdog,
	// deadline.go, which sets the module's interrupt flag). A field beside
	// the call's stack, so an entry reads no other memory for it.
	ctx      vmContext
	allocStk [2]uint64
	// allocating is set while the guest's allocator runs for a host
	// function (alloc). trap is an error a host function raises when it
	// returns (host in abi.go): it fails the guest's call. Both are
	// guarded by mu.
	allocating bool
	trap       error

	// rootID is the root context whose plugin (p) host calls act for now:
	// VMs may be shared (group.go); roots holds each plugin's root state.
	rootID uint32
	roots  sync.Map // root context id → *rootState
	// lastRoot is the root state streamCallbacks found last (guarded by
	// mu; dropped by forgetRoot when that root ends).
	lastRoot *rootState
	nextID   uint32
	contexts streamTable
	// cur is the stream context host calls act on (nil: the root context).
	cur *streamFilter
	// creating is set during a stream's proxy_on_context_create.
	creating bool
	// callResp is the HTTP call-out response during on_http_call_response.
	callResp *fasthttp.Response
	// callFailure is why the call-out failed (:dispatch_status), during
	// on_http_call_response of a failed call.
	callFailure string
	// memBytes is the linear memory's size after the last call.
	memBytes atomic.Uint64
	// started is when the VM was built (a crash soon after is a crash loop).
	started time.Time

	nextToken uint32

	// rootAttrs holds properties set from the root context.
	rootAttrs map[string][]byte

	scratch []byte // reused serialization buffer
	propBuf []byte // reused property key buffer
	// batchBuf is weft.get_properties' reused result.
	batchBuf []byte
	// jws holds the key sets of weft.jws_keys (abi_foreign_jws.go).
	jws jwsState
	// edits is weft.edit_headers' reused list.
	edits []headerEdit
	pairs [][2][]byte // reused map parsing buffer

	onContextCreate, onVMStart, onConfigure, onTick, onDone, onDelete, onLog    *guestFunc
	onReqHeaders, onReqBody, onRespHeaders, onRespBody, onHTTPCallResp, onQueue *guestFunc
	onReqTrailers, onRespTrailers                                               *guestFunc
	onGRPCInitialMeta, onGRPCReceive, onGRPCTrailingMeta, onGRPCClose           *guestFunc
	// Network (L4) callbacks (network.go).
	onNewConnection, onDownstreamData, onUpstreamData, onDownstreamClose, onUpstreamClose *guestFunc
	// startLog collects the guest's warn+ log lines while it starts (nil
	// otherwise).
	startLog []string
	// grpcCalls are the VM's gRPC call-outs in flight (abi_grpc.go); grpc
	// is what the gRPC callback running now reads.
	grpcCalls map[uint32]*grpcCall
	grpc      *grpcState
	malloc    *guestFunc
	// dispatch is the module's weft_dispatch (package interrupt), through
	// which the stream callbacks it covers are called: one wazero call
	// engine, native stack and execution context for all of them, instead
	// of one per exported function, so the seven entries of a request
	// touch one of each (cold in cache between a request's callbacks).
	// nil for a module without it (a trusted module is not rewritten).
	dispatch *guestFunc
	// startCombined: a stream's proxy_on_context_create and
	// proxy_on_request_headers are made in one entry into the guest
	// (interrupt.SelCreateRequestHeaders), the context created lazily at
	// the stream's first callback; endCombined: its proxy_on_log,
	// proxy_on_done and proxy_on_delete in one (interrupt.SelEnd). Set
	// when the module's dispatcher has them (useDispatcher).
	startCombined, endCombined bool
	// respCombined: a whole response's proxy_on_response_headers and
	// proxy_on_response_body can be made in one entry
	// (interrupt.SelResponseHeadersBody, streamFilter.OnResponse).
	respCombined bool
	// bodyNext is set while a SelResponseHeadersBody call runs: the
	// guest's first host call in it sets the stop global (host, abi.go),
	// so the body callback is made in that entry only after a headers
	// callback that touched nothing of the host's.
	bodyNext bool
	// combining is set while a SelCreateRequestHeaders call runs: the
	// stage global then says whether the guest is in its context create.
	combining bool
	// stop is the dispatcher's stop global (interrupt.StopName); stopped
	// records that the host set it in the running call.
	stop    api.MutableGlobal
	stopped bool
}

// lifecycleTimeout bounds _initialize, on_vm_start and on_configure, which
// may do real work (a Go guest's runtime start) and run where nothing waits
// on them (a load, a VM rebuilt in the background), so they get far more
// than a callback.
func (p *Plugin) lifecycleTimeout() time.Duration {
	return max(20*p.spec.CallbackTimeout, DefaultStartTimeout)
}

// newVM instantiates the plugin's module and runs its start sequence:
// _initialize (or _start), then for each plugin of the group its root
// context and on_configure (on_vm_start once, on the first). The caller
// holds s.g.mu.
func (p *Plugin) newVM(s *slot) (*vm, error) {
	v := &vm{p: p, slot: s, nextID: nextIDAfter(s.g.members), rootID: p.rootCtx, nextToken: 1, started: time.Now()}
	v.ctx.v = v
	// Instantiation runs no guest code (no start function): only the
	// calls below need the watchdog.
	fail := func(err error) (*vm, error) {
		if v.mod != nil {
			p.rt.watchdog.remove(v)
			_ = v.mod.Close(context.Background())
		}
		return nil, err
	}

	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader).
		WithStdout(&guestLogWriter{log: p.log, level: zap.InfoLevel}).
		WithStderr(&guestLogWriter{log: p.log, level: zap.WarnLevel}).
		WithArgs(p.spec.Name)
	mod, err := p.engine.r.InstantiateModule(experimental.WithMemoryAllocator(&v.ctx, v.linearMemory(p.image)), p.compiled, cfg)
	if err != nil {
		return fail(fmt.Errorf("instantiate: %w", v.explain(err)))
	}
	v.mod = mod
	v.running.Store(&mod)
	p.rt.watchdog.add(v)
	if p.interruptible {
		g, ok := mod.ExportedGlobal(interrupt.GlobalName).(api.MutableGlobal)
		if !ok {
			return fail(errors.New("the interrupt flag is missing from the rewritten module"))
		}
		v.interrupt.Store(&g)
		if c := mod.ExportedGlobal(interrupt.CountdownName); c != nil {
			v.countdown.Store(&c)
		}
	}
	if v.mem = mod.ExportedMemory("memory"); v.mem == nil {
		if v.mem = mod.Memory(); v.mem == nil {
			return fail(errors.New("module exports no memory"))
		}
	}
	v.onContextCreate = lookup(mod, "proxy_on_context_create")
	v.onVMStart = lookup(mod, "proxy_on_vm_start")
	v.onConfigure = lookup(mod, "proxy_on_configure")
	v.onTick = lookup(mod, "proxy_on_tick")
	v.onDone = lookup(mod, "proxy_on_done")
	v.onDelete = lookup(mod, "proxy_on_delete")
	v.onLog = lookup(mod, "proxy_on_log")
	v.onReqHeaders = lookup(mod, "proxy_on_request_headers")
	v.onReqBody = lookup(mod, "proxy_on_request_body")
	v.onRespHeaders = lookup(mod, "proxy_on_response_headers")
	v.onRespBody = lookup(mod, "proxy_on_response_body")
	v.onReqTrailers = lookup(mod, "proxy_on_request_trailers")
	v.onRespTrailers = lookup(mod, "proxy_on_response_trailers")
	v.onGRPCInitialMeta = lookup(mod, "proxy_on_grpc_receive_initial_metadata")
	v.onGRPCReceive = lookup(mod, "proxy_on_grpc_receive")
	v.onGRPCTrailingMeta = lookup(mod, "proxy_on_grpc_receive_trailing_metadata")
	v.onGRPCClose = lookup(mod, "proxy_on_grpc_close")
	v.onHTTPCallResp = lookup(mod, "proxy_on_http_call_response")
	v.onQueue = lookup(mod, "proxy_on_queue_ready")
	v.onNewConnection = lookup(mod, "proxy_on_new_connection")
	v.onDownstreamData = lookup(mod, "proxy_on_downstream_data")
	v.onUpstreamData = lookup(mod, "proxy_on_upstream_data")
	v.onDownstreamClose = lookup(mod, "proxy_on_downstream_connection_close")
	v.onUpstreamClose = lookup(mod, "proxy_on_upstream_connection_close")
	if p.interruptible {
		v.useDispatcher(mod)
	}
	if v.malloc = lookup(mod, "proxy_on_memory_allocate"); v.malloc == nil {
		v.malloc = lookup(mod, "malloc")
	}
	if v.malloc == nil || v.malloc.np != 1 || v.malloc.nr != 1 {
		return fail(errors.New("module exports no allocator (proxy_on_memory_allocate or malloc)"))
	}
	if v.onContextCreate == nil {
		return fail(errors.New("module exports no proxy_on_context_create"))
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	v.starting.Store(true)
	defer v.starting.Store(false)
	if init := lookup(mod, "_initialize"); init != nil {
		if _, err := v.invoke(init); err != nil {
			return fail(fmt.Errorf("_initialize: %w", err))
		}
	} else if start := lookup(mod, "_start"); start != nil {
		if _, err := v.invoke(start); err != nil {
			return fail(fmt.Errorf("_start (build the module as a reactor: a command's _start exits): %w", err))
		}
	}
	// A guest that refuses its configuration says why in its log: keep
	// what it logs at warn and above while starting, and put it in the
	// error (which weft filter run, the rejected config and a NACK show).
	v.startLog = []string{}
	defer func() { v.startLog = nil }()
	// Every plugin of the group gets its root context; the first one's
	// also hears proxy_on_vm_start, once per VM (group.go).
	for i, m := range s.g.members {
		v.roots.Store(m.rootCtx, &rootState{p: m})
		v.enterRoot(m)
		if _, err := v.invoke(v.onContextCreate, uint64(m.rootCtx), 0); err != nil {
			return fail(fmt.Errorf("proxy_on_context_create(root %d): %w", m.rootCtx, err))
		}
		if i == 0 && v.onVMStart != nil {
			ok, err := v.invoke(v.onVMStart, uint64(m.rootCtx), uint64(len(p.spec.VMConfig)))
			if err != nil {
				return fail(fmt.Errorf("proxy_on_vm_start: %w", err))
			}
			if uint32(ok) == 0 {
				return fail(errors.New("proxy_on_vm_start returned false" + v.startReason()))
			}
		}
		if v.onConfigure != nil {
			ok, err := v.invoke(v.onConfigure, uint64(m.rootCtx), uint64(len(m.spec.PluginConfig)))
			if err != nil {
				return fail(fmt.Errorf("proxy_on_configure: %w", err))
			}
			if uint32(ok) == 0 {
				return fail(errors.New("proxy_on_configure returned false" + v.startReason()))
			}
		}
	}
	v.enterRoot(p)
	return v, nil
}

// maxStartLog bounds what the guest's start-up log contributes to an error.
const maxStartLog = 3

// startReason is what the guest logged at warn and above while starting,
// as ": first; second" ("" when it logged nothing).
func (v *vm) startReason() string {
	if len(v.startLog) == 0 {
		return ""
	}
	return ": the guest logged: " + strings.Join(v.startLog, "; ")
}

// invoke calls g with args under the plugin's callback deadline (the
// start deadline while v.starting), which the Runtime's watchdog enforces.
// The caller holds v.mu. Extra args beyond g's arity are dropped (ABI 0.1.0
// callbacks have no end_of_stream).
func (v *vm) invoke(g *guestFunc, args ...uint64) (uint64, error) {
	r, err := v.call(g, args...)
	v.account()
	return r, err
}

// invokeStream is invoke for a callback of stream f: the call is counted
// in f and added to the plugin's count once, when the stream ends
// (OnDone), instead of one atomic add per call.
func (v *vm) invokeStream(f *streamFilter, g *guestFunc, args ...uint64) (uint64, error) {
	r, err := v.call(g, args...)
	f.calls++
	v.accountMemory()
	return r, err
}

func (v *vm) call(g *guestFunc, args ...uint64) (uint64, error) {
	fn := g.f
	var st []uint64
	if g.via != 0 {
		// weft_dispatch(selector, a, b, c): it passes on as many of a, b,
		// c as the callback takes.
		fn = v.dispatch.f
		st = v.stack[:4]
		st[0] = uint64(g.via - 1)
		for i := 1; i < 4; i++ {
			if i <= len(args) && i <= g.np {
				st[i] = args[i-1]
			} else {
				st[i] = 0
			}
		}
	} else {
		st = v.stack[:g.stackWidth]
		for i := range st { // a loop: copy's memmove costs more for 1–5 words
			if i < len(args) {
				st[i] = args[i]
			} else {
				st[i] = 0
			}
		}
	}
	if err := v.run(fn, st); err != nil {
		return 0, v.explain(err)
	}
	if g.nr > 0 {
		return st[0], nil
	}
	return 0, nil
}

// run makes one entry into the guest with its stack st, under the
// deadline unless the plugin is trusted (nothing could stop its calls
// anyway): the watchdog charges the call to v's plugin.
func (v *vm) run(fn api.Function, st []uint64) error {
	trusted := v.p.spec.Trusted
	if !trusted {
		if v.charged.Load() != v.p {
			v.charged.Store(v.p)
		}
		v.enter()
	}
	err := fn.CallWithStack(&v.ctx, st)
	if !trusted {
		v.leave()
	}
	return err
}

// explain turns wazero's error for a stopped call into ours.
func (v *vm) explain(err error) error {
	if v.timedOut.Load() {
		if d := v.stopDetail.Load(); d != nil {
			return fmt.Errorf("%w (%s): %w", errCallbackStuck, *d, err)
		}
		return fmt.Errorf("%w: %w", errCallbackStuck, err)
	}
	return err
}

// alloc asks the guest for n bytes. It is called from host functions, so
// it uses its own stack.
//
// It does not enter the allocator again from inside it: an allocator that
// calls a host function handing over data (which allocates) would recurse
// guest → host → allocator → host … for ever without a loop or a call cycle
// in the module, so without passing the rewrite's check, growing the Go
// stack until the process dies. No allocator needs that; the host function
// fails and traps the guest's call (the VM is replaced, as after any trap),
// and so does each host function around it.
func (v *vm) alloc(n uint32) (uint32, bool) {
	if v.allocating {
		v.trap = errAllocReentry
		return 0, false
	}
	v.allocating = true
	v.allocStk[0] = uint64(n)
	err := v.malloc.f.CallWithStack(&v.ctx, v.allocStk[:1])
	v.allocating = false
	if err != nil {
		if errors.Is(err, errAllocReentry) {
			v.trap = err
		}
		return 0, false
	}
	ptr := uint32(v.allocStk[0])
	if ptr == 0 || !v.writable(ptr, n) {
		return 0, false
	}
	return ptr, true
}

// breakLocked marks v broken after a failed call: it counts and logs the
// event, fails the streams paused on it, closes the module and asks its slot
// for a replacement. The caller holds v.mu.
func (v *vm) breakLocked(cause error) {
	if v.broken {
		return
	}
	v.broken = true
	p := v.p
	if errors.Is(cause, errCallbackStuck) {
		p.events.n[eventTimeout].Add(1)
		p.log.Warn("wasm callback overran its deadline; replacing vm", zap.Duration("deadline", p.spec.CallbackTimeout), zap.Error(cause))
	} else {
		p.events.n[eventTrap].Add(1)
		p.log.Warn("wasm guest failed; replacing vm", zap.Error(cause))
	}
	v.contexts.each(func(f *streamFilter) { f.wakeLocked(outcomeFail) })
	v.cancelGRPCLocked()
	v.closeLocked()
	if v.slot != nil {
		v.slot.replace(v, errors.Is(cause, errCallbackStuck))
	}
}

// closeLocked closes the module. The caller holds v.mu.
func (v *vm) closeLocked() {
	if v.closed {
		return
	}
	v.closed = true
	v.broken = true
	v.p.rt.watchdog.remove(v)
	if v.mod != nil {
		_ = v.mod.Close(context.Background())
	}
}

// shutdown ends the root contexts (on_done, on_delete) and closes the VM.
func (v *vm) shutdown() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.roots.Range(func(_, r any) bool {
		v.endRoot(r.(*rootState).p)
		return true
	})
	v.cancelGRPCLocked()
	v.closeLocked()
}

// guestLogWriter sends a guest's stdout/stderr to the plugin's logger.
type guestLogWriter struct {
	log   *zap.Logger
	level zapLevel
}

func (w *guestLogWriter) Write(b []byte) (int, error) {
	if ce := w.log.Check(w.level, "wasm guest output"); ce != nil {
		ce.Write(zap.ByteString("text", b))
	}
	return len(b), nil
}

// useDispatcher routes the stream callbacks weft_dispatch covers through
// it (package interrupt adds it to a rewritten module). A callback is
// routed only if its signature follows interrupt.Dispatchable, the rule
// the dispatcher was built by; the others are called directly.
func (v *vm) useDispatcher(mod api.Module) {
	d := lookup(mod, interrupt.DispatchName)
	if d == nil || d.np != 4 || d.nr != 1 {
		return
	}
	for i, name := range interrupt.Dispatched {
		g := v.streamCallback(name)
		if g == nil {
			continue
		}
		def := g.f.Definition()
		if !interrupt.Dispatchable(valTypes(def.ParamTypes()), valTypes(def.ResultTypes())) {
			continue
		}
		g.via = uint8(i + 1)
		v.dispatch = d
	}
	stage, ok1 := mod.ExportedGlobal(interrupt.StageName).(api.MutableGlobal)
	stop, ok2 := mod.ExportedGlobal(interrupt.StopName).(api.MutableGlobal)
	if v.dispatch == nil || !ok1 || !ok2 {
		return
	}
	v.stage.Store(&stage)
	v.stop = stop
	// The dispatcher built each combined selector from the same rule
	// (interrupt.Dispatchable) on the same signatures.
	via := func(g *guestFunc) bool { return g != nil && g.via != 0 }
	v.startCombined = via(v.onContextCreate) && via(v.onReqHeaders)
	v.respCombined = via(v.onRespHeaders) && via(v.onRespBody)
	// Every one of log, done and delete the module has must go through
	// SelEnd, so the three keep their order in one entry.
	v.endCombined = (v.onLog == nil || via(v.onLog)) && (v.onDone == nil || via(v.onDone)) &&
		(v.onDelete == nil || via(v.onDelete))
}

// callCombined makes one entry into the guest through weft_dispatch with
// a combined selector (interrupt.SelCreateRequestHeaders, SelEnd,
// SelResponseHeadersBody: a stream's callbacks only), under
// the deadline like any call: the watchdog sees one call, each callback
// in it under its own deadline (it reads the stage global). The caller
// holds v.mu.
func (v *vm) callCombined(sel, a, b, c uint64) (uint64, error) {
	st := v.stack[:4]
	st[0], st[1], st[2], st[3] = sel, a, b, c
	err := v.run(v.dispatch.f, st)
	// The linear memory is accounted once per stream, when it ends
	// (streamFilter.OnDone), not after each entry: one read of wazero's
	// memory instance instead of three.
	if err != nil {
		return 0, v.explain(err)
	}
	return st[0], nil
}

// stageNow is the dispatcher's stage global: the selector of the
// callback a combined call runs (or ran last); 0 without the global.
func (v *vm) stageNow() uint32 {
	if g := v.stage.Load(); g != nil {
		return uint32((*g).Get())
	}
	return 0
}

// stopCombined asks the running SelCreateRequestHeaders call to return
// after the context create. The caller holds v.mu.
func (v *vm) stopCombined() {
	if v.combining {
		v.stop.Set(1)
		v.stopped = true
	}
}

// inCreate reports whether the guest runs a stream's
// proxy_on_context_create now. The caller holds v.mu.
func (v *vm) inCreate() bool {
	return v.creating && (!v.combining || v.stageNow() == 0)
}

// callbackName is the export whose selector is sel.
func callbackName(sel uint32) string {
	if i := int(sel); i < len(interrupt.Dispatched) {
		return interrupt.Dispatched[i]
	}
	return "weft_dispatch"
}

// streamCallback is the looked-up callback of an export
// interrupt.Dispatched names.
func (v *vm) streamCallback(name string) *guestFunc {
	switch name {
	case "proxy_on_context_create":
		return v.onContextCreate
	case "proxy_on_request_headers":
		return v.onReqHeaders
	case "proxy_on_request_body":
		return v.onReqBody
	case "proxy_on_request_trailers":
		return v.onReqTrailers
	case "proxy_on_response_headers":
		return v.onRespHeaders
	case "proxy_on_response_body":
		return v.onRespBody
	case "proxy_on_response_trailers":
		return v.onRespTrailers
	case "proxy_on_log":
		return v.onLog
	case "proxy_on_done":
		return v.onDone
	case "proxy_on_delete":
		return v.onDelete
	}
	return nil
}

// valTypes is a signature's types as Wasm's value type bytes.
func valTypes(ts []api.ValueType) []byte {
	b := make([]byte, len(ts))
	for i, t := range ts {
		b[i] = t
	}
	return b
}
