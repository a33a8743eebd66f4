package wasm

import (
	"fmt"
	"math/bits"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/wasm/interrupt"
)

// Outcomes that end a pause.
const (
	outcomeNone uint8 = iota
	outcomeContinue
	outcomeLocalReply
	outcomeClose
	outcomeFail
)

// Phases of a stream, for resuming the right direction.
const (
	phaseRequest uint8 = iota
	phaseResponse
)

// failStatus is the local reply status of a failed filter under
// fail_closed: Envoy's Context::failStream answers 503 (details
// "wasm_fail_stream").
const failStatus = 503

// localReply is a pending proxy_send_local_response, copied out of guest
// memory.
type localReply struct {
	status  int
	details []byte
	body    []byte
	headers [][2]string
}

// streamFilter is one stream's context on one VM. It implements
// filter.StreamFilter. Fields marked (mu) are guarded by v.mu.
type streamFilter struct {
	p    *Plugin
	s    *filter.Stream
	slot *slot
	v    *vm
	id   uint32

	// held is the body the chain holds for this filter at its last body
	// callback (what it buffered), counted in its plugin's host memory.
	held int
	// calls counts the stream's calls into the guest, added to the
	// plugin's count when it ends (invokeStream).
	calls uint32

	// callbacks are the stream callbacks the guest needs
	// (weft.stream_callbacks, abi_foreign_callbacks.go); the others
	// continue without entering the guest. Set while the context is
	// created, on the stream's goroutine.
	callbacks uint16

	// lazy: the guest's context is still to be created (vm.startCombined):
	// with the request headers in one entry (startLocked), or on its own
	// before any other first callback (ensureCreated).
	lazy bool
	// logPending: OnLog was called on a VM whose log, done and delete are
	// made in one entry, by OnDone (endLocked).
	logPending bool

	failNow  error // the stream could not get a working context
	badWrite error // (mu) a header write refused in a callback (abi_headers_check.go)
	skip     bool  // failed: no more header/body callbacks
	phase    uint8

	paused     bool        // (mu) the stream goroutine waits on wake
	waited     bool        // the stream paused once: wake may hold a late outcome
	resumed    bool        // (mu) continue/close/local reply came before the callback returned
	inCallback bool        // (mu) one of this stream's callbacks runs now
	pending    uint8       // (mu) outcome decided while not paused
	local      localReply  // (mu) valid when pending/outcome is outcomeLocalReply
	wake       chan uint8  // outcome of a pause
	timer      *time.Timer // pause deadline, reused
	details    string      // response code details of our local reply
	// net is set on a network (L4) context (network.go).
	net *netState

	// added counts what the filter wrote into each direction's headers
	// and trailers (limits.go); overLimits is set by a write refused for
	// going past the listener's limits, and fails the callback.
	added      [2]addedHeaders
	overLimits error
}

// OnRequestHeaders runs proxy_on_request_headers.
func (f *streamFilter) OnRequestHeaders(s *filter.Stream, endOfStream bool) filter.Status {
	f.phase = phaseRequest
	if f.failNow != nil {
		err := f.failNow
		f.failNow = nil
		return f.fail(err)
	}
	if f.lazy && f.callbacks&callbackRequestHeaders == 0 {
		// No request headers to make it with: create the context alone.
		if st, ok := f.ensureCreated(); !ok {
			return st
		}
	}
	g := f.vOr(callbackRequestHeaders, func(v *vm) *guestFunc { return v.onReqHeaders })
	if g == nil {
		return f.run(nil, 0, 0)
	}
	return f.run(g, uint64(headers{req: &s.Request.Header, fullReq: s.Request}.count()), b2u(endOfStream))
}

// OnRequestBody runs proxy_on_request_body with the body data the chain
// gives (the whole body on HTTP/1.1; a chunk, or what the filter buffered,
// on a stream). A Pause on data that is not the last buffers it.
func (f *streamFilter) OnRequestBody(s *filter.Stream, endOfStream bool) filter.Status {
	f.phase = phaseRequest
	n := len(s.Request.Body())
	if f.skip || f.v == nil {
		return filter.Continue
	}
	f.hold(n)
	if n > f.p.spec.MaxBodyBytes {
		f.p.events.n[eventBodyTooLarge].Add(1)
		f.skip = true
		s.SendLocalReply(413, []byte("Payload Too Large"), nil)
		return filter.LocalReply
	}
	if st, ok := f.ensureCreated(); !ok {
		return st
	}
	return f.runData(f.vOr(callbackRequestBody, func(v *vm) *guestFunc { return v.onReqBody }), uint64(n), endOfStream)
}

// OnRequestTrailers runs proxy_on_request_trailers.
func (f *streamFilter) OnRequestTrailers(s *filter.Stream) filter.Status {
	f.phase = phaseRequest
	if st, ok := f.ensureCreated(); !ok {
		return st
	}
	g := f.vOr(callbackRequestTrailers, func(v *vm) *guestFunc { return v.onReqTrailers })
	if g == nil {
		return f.run(nil, 0, 0)
	}
	return f.run(g, uint64(trailerCount(s.RequestTrailers)), 0)
}

// OnResponseTrailers runs proxy_on_response_trailers.
func (f *streamFilter) OnResponseTrailers(s *filter.Stream) filter.Status {
	f.phase = phaseResponse
	if st, ok := f.ensureCreated(); !ok {
		return st
	}
	g := f.vOr(callbackResponseTrailers, func(v *vm) *guestFunc { return v.onRespTrailers })
	if g == nil {
		return f.run(nil, 0, 0)
	}
	return f.run(g, uint64(trailerCount(s.ResponseTrailers)), 0)
}

func trailerCount(t *fasthttp.ResponseHeader) int {
	if t == nil {
		return 0
	}
	return headers{resp: t, trailer: true}.count()
}

// OnResponseHeaders runs proxy_on_response_headers.
func (f *streamFilter) OnResponseHeaders(s *filter.Stream, endOfStream bool) filter.Status {
	f.phase = phaseResponse
	if f.failNow != nil {
		err := f.failNow
		f.failNow = nil
		return f.fail(err)
	}
	if st, ok := f.ensureCreated(); !ok {
		return st
	}
	g := f.vOr(callbackResponseHeaders, func(v *vm) *guestFunc { return v.onRespHeaders })
	if g == nil {
		return f.run(nil, 0, 0)
	}
	return f.run(g, uint64(headers{resp: &s.Response.Header}.count()), b2u(endOfStream))
}

// OnResponseBody runs proxy_on_response_body, as OnRequestBody does.
func (f *streamFilter) OnResponseBody(s *filter.Stream, endOfStream bool) filter.Status {
	f.phase = phaseResponse
	n := len(s.Response.Body())
	if f.skip || f.v == nil {
		return filter.Continue
	}
	f.hold(n)
	if n > f.p.spec.MaxBodyBytes {
		f.p.events.n[eventBodyTooLarge].Add(1)
		f.skip = true
		s.SendLocalReply(500, []byte("Internal Server Error"), nil)
		return filter.LocalReply
	}
	if st, ok := f.ensureCreated(); !ok {
		return st
	}
	return f.runData(f.vOr(callbackResponseBody, func(v *vm) *guestFunc { return v.onRespBody }), uint64(n), endOfStream)
}

// OnResponse makes a whole response's callbacks: proxy_on_response_headers
// (end_of_stream false) and, unless that answered LocalReply,
// proxy_on_response_body with the whole body (end_of_stream true), as
// OnResponseHeaders and OnResponseBody in turn would, with their results
// (filter.ResponseCombiner: the chain calls it when this filter is the
// only one that sees the response). Where the VM's dispatcher has
// interrupt.SelResponseHeadersBody, both are one entry into the guest; the
// body callback is made in it only if the headers callback answered
// Continue without calling the host (any host call sets the stop global:
// what it did, a local reply, a header or body write, a refused write,
// decides as it always did, and the body callback is then made on its
// own). A trap or an overrun deadline is the callback's own (the stage
// global names it; the watchdog gives each its deadline).
func (f *streamFilter) OnResponse(s *filter.Stream) filter.Status {
	v := f.v
	n := len(s.Response.Body())
	const both = callbackResponseHeaders | callbackResponseBody
	if v == nil || !v.respCombined || f.failNow != nil || f.lazy || f.skip || f.callbacks&both != both ||
		n == 0 || n > f.p.spec.MaxBodyBytes {
		return f.responseApart(s)
	}
	f.phase = phaseResponse
	if !v.lockQueued(f.p) {
		return f.fail(errOverloaded)
	}
	if v.broken {
		v.mu.Unlock()
		return f.fail(errVMBroken)
	}
	if f.pending != outcomeNone {
		// An outcome waits for the stream's next callback (a local reply
		// sent from a call-out's answer): the headers' alone.
		v.mu.Unlock()
		return f.responseApart(s)
	}
	held := f.held
	f.hold(n)
	v.enterStream(f)
	f.inCallback = true
	v.bodyNext, v.stopped = true, false
	action, err := v.callCombined(interrupt.SelResponseHeadersBody, uint64(f.id),
		uint64(headers{resp: &s.Response.Header}.count()), uint64(n)<<1|1)
	v.bodyNext = false
	bodyMade := err == nil && action == 0 && !v.stopped
	if !bodyMade {
		bodyMade = v.stageNow() == interrupt.StageResponseBody
	}
	if v.stopped {
		v.stop.Set(0)
		v.stopped = false
	}
	f.inCallback = false
	v.cur = nil
	if bodyMade {
		// The headers callback answered Continue and called nothing of
		// the host's: what after would make of it is Continue.
		f.calls += 2
		if err != nil {
			err = fmt.Errorf("proxy_on_response_body: %w", err)
		}
		if f.after(action, err, false) == filter.LocalReply {
			return filter.LocalReply
		}
		return filter.Continue
	}
	f.calls++
	f.hold(held)
	if err != nil {
		err = fmt.Errorf("proxy_on_response_headers: %w", err)
	}
	if f.after(action, err, false) == filter.LocalReply {
		return filter.LocalReply
	}
	if f.OnResponseBody(s, true) == filter.LocalReply {
		return filter.LocalReply
	}
	return filter.Continue
}

// responseApart is OnResponse in two calls.
func (f *streamFilter) responseApart(s *filter.Stream) filter.Status {
	if f.OnResponseHeaders(s, false) == filter.LocalReply {
		return filter.LocalReply
	}
	if f.OnResponseBody(s, true) == filter.LocalReply {
		return filter.LocalReply
	}
	return filter.Continue
}

// OnLog runs proxy_on_log, or leaves it to OnDone where log, done and
// delete are made in one entry into the guest (vm.endCombined: the chain
// calls OnDone right after every filter's OnLog).
func (f *streamFilter) OnLog(s *filter.Stream) {
	v := f.v
	if v == nil {
		return
	}
	if v.endCombined {
		f.logPending = true
		return
	}
	if v.onLog == nil || f.callbacks&callbackLog == 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.broken || v.contexts.get(f.id) != f {
		return
	}
	if f.lazy && f.createLocked(v) != nil {
		// No callback came before (the filter did not see the request):
		// the context is created before its log, as OnDone would.
		return
	}
	v.enterStream(f)
	if _, err := v.invokeStream(f, v.onLog, uint64(f.id)); err != nil {
		v.breakLocked(fmt.Errorf("proxy_on_log: %w", err))
	}
	v.cur = nil
}

// OnDone runs proxy_on_done and proxy_on_delete and releases the stream.
func (f *streamFilter) OnDone(s *filter.Stream) {
	p := f.p
	if v := f.v; v != nil {
		v.mu.Lock()
		if !v.broken && v.contexts.get(f.id) == f && f.lazy {
			// No callback came before the end (the filter did not see the
			// request): the context is created as it always is.
			_ = f.createLocked(v)
		}
		if !v.broken && v.contexts.get(f.id) == f && v.endCombined {
			v.enterStream(f)
			f.endLocked(v)
			v.cur = nil
		} else if !v.broken && v.contexts.get(f.id) == f {
			v.enterStream(f)
			if v.onDone != nil && f.callbacks&callbackDone != 0 {
				if _, err := v.invokeStream(f, v.onDone, uint64(f.id)); err != nil {
					v.breakLocked(fmt.Errorf("proxy_on_done: %w", err))
				}
			}
			if v.onDelete != nil && !v.broken && f.callbacks&callbackNoContext == 0 {
				if _, err := v.invokeStream(f, v.onDelete, uint64(f.id)); err != nil {
					v.breakLocked(fmt.Errorf("proxy_on_delete: %w", err))
				}
			}
			v.cur = nil
		}
		if !v.broken {
			v.accountMemory() // after the stream's entries (vm.callCombined)
		}
		v.contexts.remove(f)
		v.mu.Unlock()
		f.slot.load.Add(-1)
		if f.calls > 0 {
			p.events.acct.calls.Add(uint64(f.calls))
		}
	}
	f.hold(0)
	f.reset()
	p.filters.Put(f)
	p.active.leave()
}

// endLocked makes the stream's last callbacks, proxy_on_log (if OnLog
// asked for it), proxy_on_done and proxy_on_delete, in one entry into the
// guest (interrupt.SelEnd), in that order, each only if it would be made
// on its own. A trap is reported as the callback's own (the stage global
// names it) and the VM is replaced. When proxy_on_done answers false the
// entry stops before proxy_on_delete, which the host then calls at once,
// as it always has (as Envoy does for a stream's context; proxy_done is a
// no-op). The caller holds v.mu, with f entered.
func (f *streamFilter) endLocked(v *vm) {
	var mask uint64
	if f.logPending && v.onLog != nil && f.callbacks&callbackLog != 0 {
		mask |= interrupt.EndLog
	}
	if v.onDone != nil && f.callbacks&callbackDone != 0 {
		mask |= interrupt.EndDone
	}
	if v.onDelete != nil && f.callbacks&callbackNoContext == 0 {
		mask |= interrupt.EndDelete
	}
	if mask == 0 {
		return
	}
	r, err := v.callCombined(interrupt.SelEnd, uint64(f.id), mask, 0)
	if err != nil {
		stage := v.stageNow()
		f.calls += endCallsRun(mask, stage)
		v.breakLocked(fmt.Errorf("%s: %w", callbackName(stage), err))
		return
	}
	f.calls += uint32(bits.OnesCount64(mask))
	if r == 0 && mask&interrupt.EndDelete != 0 {
		// proxy_on_done answered false.
		f.calls--
		if _, err := v.invokeStream(f, v.onDelete, uint64(f.id)); err != nil {
			v.breakLocked(fmt.Errorf("proxy_on_delete: %w", err))
		}
	}
}

// endCallsRun is how many callbacks of a SelEnd entry with mask ran
// (the one that failed included) when it failed at stage.
func endCallsRun(mask uint64, stage uint32) uint32 {
	n := uint32(0)
	for _, e := range [...]struct {
		bit uint64
		sel uint32
	}{{interrupt.EndLog, 7}, {interrupt.EndDone, 8}, {interrupt.EndDelete, 9}} {
		if mask&e.bit != 0 && e.sel <= stage {
			n++
		}
	}
	return n
}

// createLocked makes the stream's proxy_on_context_create on its own
// (f.lazy: deferred from NewStreamFilter), for a stream whose first
// callback is not the request headers. A trap replaces the VM. The caller
// holds v.mu and saw the VM healthy.
func (f *streamFilter) createLocked(v *vm) error {
	f.lazy = false
	v.enterStream(f)
	v.creating = true
	_, err := v.invokeStream(f, v.onContextCreate, uint64(f.id), uint64(f.p.rootCtx))
	v.creating = false
	v.cur = nil
	if err != nil {
		err = fmt.Errorf("proxy_on_context_create: %w", err)
		v.breakLocked(err)
	}
	return err
}

// ensureCreated creates the stream's guest context if that is still to
// do, before a callback that cannot make it in the same entry. ok is false
// when it failed: the stream then fails by the plugin's policy (st).
func (f *streamFilter) ensureCreated() (st filter.Status, ok bool) {
	if !f.lazy || f.skip || f.v == nil {
		return filter.Continue, true
	}
	v := f.v
	if !v.lockQueued(f.p) {
		return f.fail(errOverloaded), false
	}
	if v.broken {
		v.mu.Unlock()
		return f.fail(errVMBroken), false
	}
	err := f.createLocked(v)
	v.mu.Unlock()
	if err != nil {
		return f.fail(err), false
	}
	return filter.Continue, true
}

// startLocked makes the stream's proxy_on_context_create and its
// proxy_on_request_headers (g) in one entry into the guest
// (interrupt.SelCreateRequestHeaders). A guest that declares its callbacks
// in the create (weft.stream_callbacks) stops the entry after it
// (vm.stopCombined): the request headers are then made on their own if it
// still wants them, or not at all (skipped). A trap in the create is
// reported as the create's. The caller holds v.mu, with f entered.
func (f *streamFilter) startLocked(v *vm, g *guestFunc, headers, eos uint64) (action uint64, skipped bool, err error) {
	f.lazy = false
	v.creating, v.combining, v.stopped = true, true, false
	action, err = v.callCombined(interrupt.SelCreateRequestHeaders, uint64(f.id), uint64(f.p.rootCtx), headers<<1|eos)
	v.creating, v.combining = false, false
	// Which callbacks ran: the stage global says where a failed entry
	// stopped; a healthy one ran both unless the host stopped it (the
	// global is not read then: it is one more cold cache line).
	if err != nil {
		if v.stageNow() != 0 {
			f.calls += 2
			return 0, false, err
		}
		f.calls++
		return 0, false, fmt.Errorf("proxy_on_context_create: %w", err)
	}
	if !v.stopped {
		f.calls += 2
		return action, false, nil
	}
	f.calls++
	if f.callbacks&callbackRequestHeaders == 0 {
		return 0, true, nil
	}
	action, err = v.invokeStream(f, g, uint64(f.id), headers, eos)
	return action, false, err
}

// hold records that the chain holds n body bytes for this filter now (the
// data of its body callback: a chunk, or what it buffered), so the
// plugin's host memory is what its streams hold.
func (f *streamFilter) hold(n int) {
	if d := n - f.held; d != 0 {
		f.p.events.acct.hostBytes.Add(int64(d))
		f.held = n
	}
}

func (f *streamFilter) reset() {
	wake, timer, waited := f.wake, f.timer, f.waited
	*f = streamFilter{wake: wake, timer: timer}
	f.local.headers = f.local.headers[:0]
	if !waited {
		// Only a paused stream is ever sent an outcome (wakeLocked): a
		// stream that never paused has nothing to drain, and leaves the
		// channel's cache lines alone.
		return
	}
	select {
	case <-f.wake:
	default:
	}
}

// vOr returns the callback chosen by pick on the stream's VM, or nil when
// there is no VM or the guest does not need the callback (bit).
func (f *streamFilter) vOr(bit uint16, pick func(v *vm) *guestFunc) *guestFunc {
	if f.v == nil || f.callbacks&bit == 0 {
		return nil
	}
	return pick(f.v)
}

// runData calls a body callback: a Pause on data that is not the last
// asks the chain to buffer it (and call again with more) instead of
// waiting for a resume.
func (f *streamFilter) runData(g *guestFunc, size uint64, endOfStream bool) filter.Status {
	return f.call(g, size, b2u(endOfStream), !endOfStream)
}

// run calls a header/body callback and applies its action: Continue,
// Pause (block until resumed), or a local reply.
func (f *streamFilter) run(g *guestFunc, a1, a2 uint64) filter.Status {
	return f.call(g, a1, a2, false)
}

func (f *streamFilter) call(g *guestFunc, a1, a2 uint64, mayBuffer bool) filter.Status {
	if f.skip || f.v == nil {
		return filter.Continue
	}
	v := f.v
	if !v.lockQueued(f.p) {
		return f.fail(errOverloaded)
	}
	if v.broken {
		v.mu.Unlock()
		return f.fail(errVMBroken)
	}
	if g == nil {
		v.mu.Unlock()
		return filter.Continue
	}
	v.enterStream(f)
	f.inCallback = true
	var action uint64
	var err error
	if f.lazy { // the request headers, with the context's create
		var skipped bool
		action, skipped, err = f.startLocked(v, g, a1, a2)
		if skipped {
			f.inCallback = false
			v.cur = nil
			v.mu.Unlock()
			return filter.Continue
		}
	} else {
		action, err = v.invokeStream(f, g, uint64(f.id), a1, a2)
	}
	f.inCallback = false
	v.cur = nil
	return f.after(action, err, mayBuffer)
}

// after applies the result of a header/body callback (its action, or the
// error that ended it). The caller holds v.mu, which after releases.
func (f *streamFilter) after(action uint64, err error, mayBuffer bool) filter.Status {
	v := f.v
	if err != nil {
		v.breakLocked(err)
		v.mu.Unlock()
		return f.fail(err)
	}
	if err := f.overLimits; err != nil {
		// The guest went past the listener's limits: a filter error.
		f.overLimits = nil
		f.pending, f.resumed = outcomeNone, false
		v.mu.Unlock()
		f.p.events.n[eventOverLimits].Add(1)
		return f.fail(err)
	}
	outcome := f.pending
	f.pending, f.resumed = outcomeNone, false
	if outcome == outcomeNone && f.badWrite != nil {
		outcome = outcomeFail // not paused: the filter already failed
	}
	if outcome == outcomeNone {
		switch uint32(action) {
		case actionPause, actionStopAllBuffer, actionStopAllWatermark:
			if mayBuffer {
				v.mu.Unlock()
				return filter.StopAndBuffer
			}
			f.paused, f.waited = true, true
			v.mu.Unlock()
			outcome = f.waitResume()
			v.mu.Lock()
			f.paused = false
		default:
			outcome = outcomeContinue
		}
	}
	if err := f.badWrite; err != nil {
		f.badWrite = nil
		v.mu.Unlock()
		return f.failWrite(err)
	}
	var lr localReply
	if outcome == outcomeLocalReply {
		lr = f.local
	}
	v.mu.Unlock()
	switch outcome {
	case outcomeLocalReply:
		f.applyLocal(&lr)
		return filter.LocalReply
	case outcomeClose:
		// Envoy resets the stream; the closest a buffered HTTP/1.1 chain
		// can do is a local reply that closes the connection.
		f.skip = true
		f.s.SendLocalReply(failStatus, nil, [][2]string{{"Connection", "close"}})
		f.s.ResponseFlags = "LR"
		return filter.LocalReply
	case outcomeFail:
		return f.fail(errVMBroken)
	case outcomeNone:
		f.p.events.n[eventPauseTimeout].Add(1)
		return f.fail(errPauseTimeout)
	}
	return filter.Continue
}

// waitResume blocks until the guest resumes the stream or the pause
// deadline passes (outcomeNone).
func (f *streamFilter) waitResume() uint8 {
	d := f.p.pauseTimeout
	if f.timer == nil {
		f.timer = time.NewTimer(d)
	} else {
		f.timer.Reset(d)
	}
	select {
	case o := <-f.wake:
		f.timer.Stop()
		return o
	case <-f.timer.C:
		// The guest may resume at the last moment: take that.
		select {
		case o := <-f.wake:
			return o
		default:
			return outcomeNone
		}
	}
}

// wakeLocked ends a pause (or records the outcome for the callback running
// now). The caller holds f.v.mu.
func (f *streamFilter) wakeLocked(outcome uint8) {
	if f.paused {
		f.paused = false
		select {
		case f.wake <- outcome:
		default:
		}
		return
	}
	switch {
	case outcome == outcomeFail:
	case outcome == outcomeContinue:
		// A continue outside a callback of this stream resumes nothing
		// (its context create is not one: vm.inCreate).
		if f.inCallback && f.pending == outcomeNone && !f.v.inCreate() {
			f.pending = outcome
		}
	default:
		// Local replies and closes win over a continue and wait for the
		// stream's next callback if none is running.
		f.pending = outcome
	}
}

func (f *streamFilter) applyLocal(lr *localReply) {
	f.s.SendLocalReply(lr.status, lr.body, lr.headers)
	if len(lr.details) > 0 {
		f.details = string(lr.details)
	}
}

// fail applies the plugin's failure policy to the stream.
func (f *streamFilter) fail(err error) filter.Status {
	return f.failLogged(err, true)
}

// failWrite fails the stream for a refused header write: counted per
// write (refuseWrite), logged once per plugin.
func (f *streamFilter) failWrite(err error) filter.Status {
	first := f.p.events.loggedInvalidHeader.CompareAndSwap(false, true)
	if first {
		f.p.log.Warn("wasm filter wrote a malformed header; the write is refused and the filter fails under its failure_policy (logged once per plugin; counted as invalid_header)",
			zap.Error(err))
	}
	return f.failLogged(err, false)
}

func (f *streamFilter) failLogged(err error, logIt bool) filter.Status {
	f.skip = true
	p := f.p
	if p.spec.FailOpen {
		p.events.n[eventFailOpen].Add(1)
		if logIt && logFailure(err) {
			p.log.Warn("wasm filter failed; fail_open: skipping it for this stream", zap.Error(err))
		}
		return filter.Continue
	}
	p.events.n[eventFailClosed].Add(1)
	if logIt && logFailure(err) {
		p.log.Warn("wasm filter failed; fail_closed: answering 503", zap.Error(err))
	}
	f.details = "wasm_fail_stream"
	f.s.SendLocalReply(failStatus, nil, nil)
	return filter.LocalReply
}

// logFailure tells the failures worth a log line per stream from those
// that come in floods and are logged once where they begin (a pool with no
// VM while a runaway is held back, a VM with a full queue): those are only
// counted.
func logFailure(err error) bool {
	return err != errNoVM && err != errOverloaded
}

// maxVMWaiters bounds the streams waiting for one VM; more fail by the
// plugin's policy at once (counted as overloaded) instead of piling up
// behind a guest that spins until its deadline.
const maxVMWaiters = 256

// lockQueued takes v.mu for a stream. A busy VM is a wait, counted
// (vm_busy), and makes a growing pool build one more VM (Plugin.grow);
// false when maxVMWaiters streams wait already.
func (v *vm) lockQueued(p *Plugin) bool {
	if v.mu.TryLock() {
		return true
	}
	ev := &p.events.n // the stream's plugin: v.p is the last callback's, read under v.mu
	ev[eventVMBusy].Add(1)
	if p.group.unbuilt.Load() > 0 { // a growing pool: streams contend, add a VM
		p.grow()
	}
	if v.waiters.Add(1) > maxVMWaiters {
		v.waiters.Add(-1)
		ev[eventOverloaded].Add(1)
		return false
	}
	v.mu.Lock()
	v.waiters.Add(-1)
	return true
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

var (
	_ filter.StreamFilter     = (*streamFilter)(nil)
	_ filter.ResponseCombiner = (*streamFilter)(nil)
)
