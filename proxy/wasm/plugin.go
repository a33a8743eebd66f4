package wasm

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/filter"
)

// Upstream is how the host sends proxy_http_call requests: the data plane
// implements it over its clusters.
type Upstream interface {
	Do(cluster string, req *fasthttp.Request, resp *fasthttp.Response, timeout time.Duration) error
}

// Env is what a plugin needs from the proxy around it.
type Env struct {
	Upstream     Upstream
	NodeID       string
	NodeMetadata map[string]string
}

// Plugin is a loaded Wasm filter: its compiled module and VM pool. It
// implements filter.Factory.
type Plugin struct {
	rt       *Runtime
	spec     PluginSpec
	env      Env
	key      string
	log      *zap.Logger
	events   *pluginEvents
	engine   *engine
	compiled wazero.CompiledModule
	sum      [32]byte
	// image is the initial content of the VMs' linear memory when the
	// module's data segments were taken out of it (nil: wazero copies
	// them in).
	image    *dataImage
	abi      abiVersion
	logLevel uint32
	// guestLogPrefix starts a guest log line as Envoy's does: "wasm log",
	// then the name, root_id and vm_id that are set, then ": ".
	guestLogPrefix string
	// interruptible: the module carries the interrupt flag its deadline
	// sets (see Load).
	interruptible bool

	// group is the pool of VMs the plugin runs in, maybe shared with
	// other plugins (group.go); slots are the group's, rootCtx is the
	// plugin's root context id in each of them.
	group   *vmGroup
	rootCtx uint32
	slots   []*slot
	rr      atomic.Uint32

	closing  atomic.Bool
	active   inflight       // streams in flight
	bg       sync.WaitGroup // tick loop, rebuilds, call-outs, queue notifications
	stop     chan struct{}
	tickWake chan struct{}
	closeMu  sync.Mutex
	closed   bool
	stopOnce sync.Once
	// pauseTimeout bounds a paused stream (PauseTimeout; tests shorten it).
	pauseTimeout time.Duration
	// runawayBackoff is the first hold of a runaway VM's replacement
	// (runawayBackoff; tests lengthen it).
	runawayBackoff time.Duration

	filters sync.Pool
}

// slot is one place in the pool: the VM serving it now (nil while it is
// being rebuilt) and how many streams are bound to it.
type slot struct {
	g          *vmGroup
	idx        int
	vm         atomic.Pointer[vm]
	load       atomic.Int32
	mu         sync.Mutex
	rebuilding bool
	// crashes counts VMs of this slot in a row that broke within
	// crashLoopWindow of their start; each one doubles the wait before the
	// next rebuild (guarded by mu).
	crashes int
	// strikes counts the slot's VMs stopped for overrunning their deadline
	// in a row (none for strikeMemory before the last); lastStrike is when
	// the last was. Guarded by mu.
	strikes    int
	lastStrike time.Time
	// unbuilt: the slot of a growing pool has never had a VM; growing:
	// its first VM is being built (guarded by mu).
	unbuilt atomic.Bool
	growing bool
}

// crashLoopWindow: a VM that breaks this soon after it started is part of
// a crash loop, and its replacement waits (crashBackoff).
const crashLoopWindow = 10 * time.Second

// crashBackoff is the wait before rebuilding a slot whose VMs broke n times
// in a row soon after starting: none for the first, then 100 ms doubling to
// 30 s, so a filter that traps on every request is not rebuilt (a full Go
// runtime start) hundreds of times a second.
func crashBackoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	return min(100*time.Millisecond<<min(n-2, 20), 30*time.Second)
}

// Rebuilding a VM stopped for overrunning its deadline waits
// runawayBackoff << (strikes-2), at most maxRunawayBackoff (1 s, 2 s, 4 s
// … 10 s): the first
// runaway is replaced at once, a guest that keeps spinning is held back
// longer each time, so it cannot take a core by looping on every request
// (issue 18 §4). Meanwhile streams go to the pool's other VMs, or fail by
// the plugin's policy when it has none, without entering the guest.
const (
	runawayBackoff    = time.Second
	maxRunawayBackoff = 10 * time.Second
	// strikeMemory: a slot whose last runaway is this old starts afresh.
	strikeMemory = 30 * time.Second
)

// strike records a runaway VM of s and returns how long to wait before
// building its replacement (base is the plugin's runawayBackoff). The
// caller holds s.mu.
func (s *slot) strike(now time.Time, base time.Duration) time.Duration {
	if now.Sub(s.lastStrike) > strikeMemory {
		s.strikes = 0
	}
	s.strikes++
	s.lastStrike = now
	if s.strikes < 2 {
		return 0
	}
	return min(base<<min(s.strikes-2, 16), max(maxRunawayBackoff, base))
}

// Load compiles (cached), builds the VM pool (each VM: instantiate,
// _initialize, proxy_on_vm_start with the VM config, root context,
// proxy_on_configure with the plugin config). A false on_vm_start /
// on_configure, a trap, a missing/unknown ABI version export → error,
// nothing half-built is left running.
func (rt *Runtime) Load(ctx context.Context, spec PluginSpec, env Env) (*Plugin, error) {
	spec = spec.withDefaults()
	if len(spec.Module) == 0 {
		return nil, fmt.Errorf("wasm plugin %q: module is empty", spec.Name)
	}
	// An untrusted module gets its interrupt flag (package interrupt): the
	// callback deadline sets it and the guest traps at its next loop
	// iteration, at the cost of a load and a branch per iteration instead
	// of wazero's call into Go per iteration and goroutine per call. A
	// module the rewrite cannot decode keeps wazero's termination checks.
	// A module whose data segments can start each VM's memory as a shared
	// copy-on-write image leaves them out (package dataimage).
	prep := rt.prepare(spec.Name, spec.Module, spec.Trusted)
	code, image, interruptible := prep.code, prep.image, prep.interruptible
	e, err := rt.engineFor(ctx, spec.MemoryLimitPages, spec.Trusted, interruptible)
	if err != nil {
		return nil, fmt.Errorf("wasm plugin %q: %w", spec.Name, err)
	}
	cm, img, sum, err := e.compile(ctx, code, image)
	if err != nil {
		return nil, fmt.Errorf("wasm plugin %q: compile: %w", spec.Name, err)
	}
	abi, err := detectABI(cm.ExportedFunctions())
	if err != nil {
		e.release(sum)
		return nil, fmt.Errorf("wasm plugin %q: %w", spec.Name, err)
	}
	log := rt.log.With(zap.String("plugin", spec.Name))
	p := &Plugin{
		rt: rt, spec: spec, env: env, key: spec.Key(), log: log,
		events: rt.metrics.eventsFor(spec.Name),
		engine: e, compiled: cm, image: img, sum: sum, abi: abi, interruptible: interruptible,
		logLevel:       max(pluginLogLevel(spec), guestLogLevel(log)),
		guestLogPrefix: envoyLogPrefix(spec),
		stop:           make(chan struct{}),
		tickWake:       make(chan struct{}, 1),

		pauseTimeout:   PauseTimeout,
		runawayBackoff: runawayBackoff,
	}
	p.filters.New = func() any { return &streamFilter{wake: make(chan uint8, 1)} }
	g, build, err := rt.joinGroup(p)
	if err != nil {
		e.release(sum)
		return nil, fmt.Errorf("wasm plugin %q: %w", spec.Name, err)
	}
	if build {
		p.rootCtx = 1
		g.members = []*Plugin{p}
		g.slots = make([]*slot, spec.PoolSize)
		for i := range g.slots {
			s := &slot{g: g, idx: i}
			if i > 0 && spec.GrowPool {
				s.unbuilt.Store(true)
				g.unbuilt.Add(1)
				g.slots[i] = s
				continue
			}
			v, err := p.newVM(s)
			if err != nil {
				p.events.n[eventVMStartFailed].Add(1)
				for _, s := range g.slots[:i] {
					if v := s.vm.Load(); v != nil {
						v.shutdown()
					}
				}
				g.members = nil
				g.dropLocked(rt)
				g.mu.Unlock()
				e.release(sum)
				return nil, fmt.Errorf("wasm plugin %q: vm %d: %w", spec.Name, i, err)
			}
			s.vm.Store(v)
			g.slots[i] = s
		}
	} else {
		if err := g.joinVMs(p); err != nil {
			g.mu.Unlock()
			e.release(sum)
			return nil, fmt.Errorf("wasm plugin %q: %w", spec.Name, err)
		}
		g.members = append(g.members, p)
	}
	p.group, p.slots = g, g.slots
	// The module is compiled and the keys computed: its bytes (2–3 MB for
	// a Go guest, one copy per filter that names it) are not read again.
	p.spec.Module = nil
	g.mu.Unlock()
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		p.leave()
		e.release(sum)
		return nil, fmt.Errorf("wasm plugin %q: runtime is closed", spec.Name)
	}
	rt.plugins[p] = struct{}{}
	rt.mu.Unlock()
	p.bg.Add(1)
	go p.tickLoop()
	rt.release.soon()
	log.Info("wasm plugin loaded", zap.String("abi", abi.String()), zap.Int("vms", spec.PoolSize), zap.Bool("vms_on_demand", spec.GrowPool),
		zap.Uint32("memory_limit_pages", spec.MemoryLimitPages))
	return p, nil
}

// Name is the plugin's configured name.
func (p *Plugin) Name() string { return p.spec.Name }

// Key is a digest of everything in the spec (module sha256, configs,
// limits): equal keys mean a snapshot swap may reuse the plugin as is.
func (p *Plugin) Key() string { return p.key }

// pick binds a new stream to the least-loaded healthy VM (ties broken round
// robin so idle pools spread streams). A growing pool with no live VM
// starts building one for the streams after this one (lockQueued grows it
// when a stream has to wait for a busy VM).
func (p *Plugin) pick() (*slot, *vm) {
	n := len(p.slots)
	if n == 1 { // the default pool on one or two cores: nothing to choose
		s := p.slots[0]
		if v := s.vm.Load(); v != nil {
			return s, v
		}
	}
	start := int(p.rr.Add(1))
	var best *slot
	var bestVM *vm
	bestLoad := int32(1 << 30)
	for i := 0; i < n; i++ {
		s := p.slots[(start+i)%n]
		v := s.vm.Load()
		if v == nil {
			continue
		}
		if l := s.load.Load(); l < bestLoad {
			best, bestVM, bestLoad = s, v, l
			if l == 0 {
				break
			}
		}
	}
	if bestVM == nil && p.group.unbuilt.Load() > 0 {
		p.grow()
	}
	return best, bestVM
}

// grow builds the first VM of one unbuilt slot of a growing pool, in the
// background, as a replacement is built. It does nothing once the pool is
// full.
func (p *Plugin) grow() {
	for _, s := range p.slots {
		if s.unbuilt.CompareAndSwap(true, false) {
			p.group.unbuilt.Add(-1)
			s.mu.Lock()
			s.growing = true
			s.mu.Unlock()
			s.startRebuild(p, nil, false)
			return
		}
	}
}

// replace swaps out a broken VM: the slot is emptied at once and a new VM
// is built in the background (retrying with backoff while the plugin
// lives). A VM stopped for overrunning its deadline (runaway) is replaced
// after the slot's runaway backoff.
func (s *slot) replace(old *vm, runaway bool) {
	s.vm.CompareAndSwap(old, nil)
	// The rebuild belongs to the plugin whose callback broke the VM; if it
	// closes first, the group's next leader takes over (leave).
	s.startRebuild(old.p, old, runaway)
}

// startRebuild builds a VM for the empty slot in the background, on p's
// account, unless a rebuild already runs. old is the VM that broke (nil
// when the slot was emptied for another reason): one that broke soon after
// its start makes the rebuild wait (crashBackoff), and one stopped for
// overrunning its deadline again (runaway) waits longer (strike).
func (s *slot) startRebuild(p *Plugin, old *vm, runaway bool) {
	s.mu.Lock()
	var hold time.Duration
	if runaway {
		hold = s.strike(time.Now(), p.runawayBackoff)
	}
	if s.rebuilding {
		s.mu.Unlock()
		return
	}
	s.rebuilding = true
	if old != nil && time.Since(old.started) < crashLoopWindow {
		s.crashes++
	} else {
		s.crashes = 0
	}
	wait := crashBackoff(s.crashes)
	crashes := s.crashes
	s.mu.Unlock()
	switch {
	case hold > 0:
		wait = max(wait, hold)
		p.events.n[eventRunawayBackoff].Add(1)
		p.log.Warn("wasm vm keeps overrunning its callback deadline; holding its replacement back",
			zap.Int("slot", s.idx), zap.Duration("for", wait))
	case wait > 0:
		p.events.n[eventCrashBackoff].Add(1)
		p.log.Warn("wasm vm keeps crashing; waiting before the next rebuild", zap.Int("slot", s.idx),
			zap.Int("crashes_in_a_row", crashes), zap.Duration("wait", wait))
	}
	started := p.goAsync(func() {
		defer func() {
			s.mu.Lock()
			s.rebuilding = false
			s.mu.Unlock()
		}()
		if wait > 0 {
			select {
			case <-p.stop:
				return
			case <-time.After(wait):
			}
		}
		backoff := 50 * time.Millisecond
		for {
			if p.closing.Load() {
				return
			}
			gone, err := s.rebuild()
			if gone {
				return
			}
			if err == nil {
				s.mu.Lock()
				grown := s.growing
				s.growing = false
				s.mu.Unlock()
				if grown {
					p.log.Info("wasm vm added to the pool", zap.Int("slot", s.idx))
					return
				}
				p.events.n[eventVMReplaced].Add(1)
				p.log.Info("wasm vm replaced", zap.Int("slot", s.idx))
				return
			}
			p.events.n[eventVMStartFailed].Add(1)
			p.log.Warn("wasm vm rebuild failed", zap.Int("slot", s.idx), zap.Error(err), zap.Duration("retry_in", backoff))
			select {
			case <-p.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	})
	if !started {
		s.mu.Lock()
		s.rebuilding = false
		s.mu.Unlock()
	}
}

// wakeTicks tells the tick loop that a period changed.
func (p *Plugin) wakeTicks() {
	select {
	case p.tickWake <- struct{}{}:
	default:
	}
}

// tickLoop calls proxy_on_tick on each VM's root context at the period that
// VM's guest set.
func (p *Plugin) tickLoop() {
	defer p.bg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		next := now.Add(time.Hour)
		for _, s := range p.slots {
			v := s.vm.Load()
			if v == nil {
				continue
			}
			r := v.root(p)
			if r == nil {
				continue
			}
			period := time.Duration(r.tickPeriod.Load())
			if period <= 0 {
				continue
			}
			if r.tickReset.Swap(false) || r.nextTick.IsZero() {
				r.nextTick = now.Add(period)
			}
			if !now.Before(r.nextTick) {
				v.tick(p)
				r.nextTick = now.Add(period)
			}
			if r.nextTick.Before(next) {
				next = r.nextTick
			}
		}
		t.Reset(time.Until(next))
		select {
		case <-p.stop:
			return
		case <-p.tickWake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
	}
}

// tick runs proxy_on_tick on p's root context on v.
func (v *vm) tick(p *Plugin) {
	if v.onTick == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.broken {
		return
	}
	if v.root(p) == nil {
		return
	}
	v.enterRoot(p)
	if _, err := v.invoke(v.onTick, uint64(p.rootCtx)); err != nil {
		v.breakLocked(fmt.Errorf("proxy_on_tick: %w", err))
	}
	v.cur = nil
}

// goAsync runs f in the background unless the plugin is shutting down; it
// reports false when f will not run.
func (p *Plugin) goAsync(f func()) bool {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return false
	}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		f()
	}()
	return true
}

// Close stops new streams, waits for in-flight streams to finish (in the
// background), then closes the VMs.
func (p *Plugin) Close() {
	if !p.closing.CompareAndSwap(false, true) {
		return
	}
	p.active.close()
	p.rt.closers.Add(1)
	go func() {
		defer p.rt.closers.Done()
		p.drainAndClose()
	}()
}

// drainAndClose is Close's background part; tests call it directly to wait.
func (p *Plugin) drainAndClose() {
	p.active.close()
	<-p.active.drained()
	p.stopBackground()
	// Runtime.Close waits for this: it must not close the wazero
	// runtimes while a leaving plugin still runs on_done in its VMs.
	p.rt.shutdowns.RLock()
	p.leave()
	p.rt.shutdowns.RUnlock()
	p.rt.queues.dropOwner(p)
	p.engine.release(p.sum)
	p.rt.mu.Lock()
	delete(p.rt.plugins, p)
	p.rt.mu.Unlock()
	p.log.Info("wasm plugin closed")
}

// stopBackground refuses new background work, stops the tick loop and
// rebuilds, and waits for call-outs and queue notifications to end.
func (p *Plugin) stopBackground() {
	p.closeMu.Lock()
	p.closed = true
	p.closeMu.Unlock()
	p.stopOnce.Do(func() { close(p.stop) })
	p.bg.Wait()
}

// NewStreamFilter binds a filter instance to s, on one VM of the pool. It
// returns nil once the plugin is closing, and a filter that fails by policy
// when no VM is healthy.
func (p *Plugin) NewStreamFilter(s *filter.Stream) filter.StreamFilter {
	if !p.active.enter() { // closing
		return p.closedFilter()
	}
	f := p.filters.Get().(*streamFilter)
	f.p, f.s = p, s
	sl, v := p.pick()
	if v == nil {
		f.failNow = errNoVM
		return f
	}
	if !v.lockQueued(p) {
		// Not bound to the VM: its log and done need no turn on it either.
		f.failNow = errOverloaded
		return f
	}
	f.slot, f.v = sl, v
	sl.load.Add(1)
	if v.broken {
		v.mu.Unlock()
		f.failNow = errVMBroken
		return f
	}
	f.id = v.nextID
	v.nextID++
	v.contexts.put(f)
	v.enterStream(f)
	f.callbacks = v.streamCallbacks(p)
	if f.callbacks&callbackNoContext != 0 {
		// The guest serves the root's streams without a context of
		// their own (weft.stream_callbacks).
		v.cur = nil
		v.mu.Unlock()
		return f
	}
	if v.startCombined {
		// The guest's context is created at the stream's first callback,
		// in the same entry as proxy_on_request_headers (streamFilter.call).
		f.lazy = true
		v.cur = nil
		v.mu.Unlock()
		return f
	}
	v.creating = true
	_, err := v.invokeStream(f, v.onContextCreate, uint64(f.id), uint64(p.rootCtx))
	v.creating = false
	v.cur = nil
	if err != nil {
		v.breakLocked(fmt.Errorf("proxy_on_context_create: %w", err))
		f.failNow = err
	}
	v.mu.Unlock()
	return f
}

// closedFilter stands in for a plugin that was closed while a stream that
// still refers to it started (a stream that loaded its config long before a
// swap). A fail_closed filter must not be skipped silently, so the stream
// fails by the plugin's policy as if the filter had failed.
func (p *Plugin) closedFilter() filter.StreamFilter {
	if p.spec.FailOpen {
		p.events.n[eventFailOpen].Add(1)
		return nil
	}
	return closedFilter{p}
}

type closedFilter struct{ p *Plugin }

func (c closedFilter) OnRequestHeaders(s *filter.Stream, _ bool) filter.Status {
	c.p.events.n[eventFailClosed].Add(1)
	s.SendLocalReply(failStatus, nil, nil)
	return filter.LocalReply
}
func (closedFilter) OnRequestBody(*filter.Stream, bool) filter.Status     { return filter.Continue }
func (closedFilter) OnRequestTrailers(*filter.Stream) filter.Status       { return filter.Continue }
func (closedFilter) OnResponseHeaders(*filter.Stream, bool) filter.Status { return filter.Continue }
func (closedFilter) OnResponseBody(*filter.Stream, bool) filter.Status    { return filter.Continue }
func (closedFilter) OnResponseTrailers(*filter.Stream) filter.Status      { return filter.Continue }
func (closedFilter) OnLog(*filter.Stream)                                 {}
func (closedFilter) OnDone(*filter.Stream)                                {}

// inflight counts streams in flight without a lock, and tells Close when
// the last one has left. Unlike a WaitGroup it may be entered while a close
// is waiting (the entry is refused), so a stream racing Close cannot panic it.
type inflight struct {
	state atomic.Int64 // count of streams, plus closingBit once closing
	once  sync.Once
	done  chan struct{}
	init  sync.Once
}

const closingBit = int64(1) << 62

func (f *inflight) ch() chan struct{} {
	f.init.Do(func() { f.done = make(chan struct{}) })
	return f.done
}

// enter admits one stream; false once closing.
func (f *inflight) enter() bool {
	for {
		v := f.state.Load()
		if v&closingBit != 0 {
			return false
		}
		if f.state.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// leave ends a stream admitted by enter.
func (f *inflight) leave() {
	if f.state.Add(-1) == closingBit {
		f.once.Do(func() { close(f.ch()) })
	}
}

// close refuses new streams; drained is closed once none is left.
func (f *inflight) close() {
	if f.state.Or(closingBit)&^closingBit == 0 {
		f.once.Do(func() { close(f.ch()) })
	}
}

// drained is closed when the closed count reaches zero.
func (f *inflight) drained() <-chan struct{} { return f.ch() }
