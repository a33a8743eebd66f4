package wasm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"go.uber.org/zap"
)

// RuntimeOptions configures a Runtime.
type RuntimeOptions struct {
	CacheDir string      // wazero compilation cache directory; "" = in-memory cache only
	Logger   *zap.Logger // nil = zap.NewNop()
}

// Runtime hosts every Wasm plugin of a process: the wazero runtimes (one per
// distinct memory limit, since wazero sets the limit per runtime), the
// compilation cache they share, the state plugins share across VMs and
// reloads (shared data, shared queues, guest metrics) and the event counters.
type Runtime struct {
	log   *zap.Logger
	cache wazero.CompilationCache
	// dir keeps compiled code and prepared modules across restarts
	// (prepared.go); "" = memory only.
	dir string
	// preparations counts modules prepared (not read back from dir).
	preparations atomic.Int64

	mu     sync.Mutex
	byPage map[engineKey]*engine // by memory limit in pages and trust
	closed bool

	plugins map[*Plugin]struct{} // loaded and not yet closed; guarded by mu
	groups  map[string]*vmGroup  // pools of shared VMs by groupKey; guarded by mu

	shared  sharedData
	queues  sharedQueues
	metrics *metricsRegistry
	// watchdog enforces every VM's callback deadline (deadline.go).
	watchdog watchdog
	// release gives the heap a burst of loads left behind back to the OS
	// (release.go).
	release heapRelease
	// shutdowns is read-held while a closing plugin ends its VMs (calls
	// into their guests); Close write-holds it to close the wazero
	// runtimes, so it never closes a module under a guest call.
	shutdowns sync.RWMutex
	// linear accounts for VMs' linear memories (memory_unix.go).
	linear linearAccount
	// closers counts plugins closing in the background (Plugin.Close).
	closers sync.WaitGroup
}

// linearAccount counts the linear memories the Runtime's VMs allocated
// off the Go heap: open ones (their pages may be resident; a closed VM's
// are given back at once) and the address space still reserved for them
// (unmapped once their VM is unreachable). A VM replaced after a trap
// must leave neither behind: tests read these after many replacements.
type linearAccount struct {
	open   atomic.Int64 // memories allocated and not yet freed
	mapped atomic.Int64 // bytes reserved and not yet unmapped
}

// engine is one wazero runtime with the host modules instantiated and the
// guest modules it compiled.
type engine struct {
	r        wazero.Runtime
	mu       sync.Mutex
	compiled map[[32]byte]*compiledModule
}

type compiledModule struct {
	cm wazero.CompiledModule
	// image is the initial memory the module's data segments make, when
	// they were taken out of the module (package dataimage); nil otherwise.
	image *dataImage
	refs  int
}

// NewRuntime builds a Runtime. With o.CacheDir set, compiled code survives
// restarts.
func NewRuntime(ctx context.Context, o RuntimeOptions) (*Runtime, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	var cache wazero.CompilationCache
	if o.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(o.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm runtime: cache dir %q: %w", o.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	rt := &Runtime{
		log:     log,
		cache:   cache,
		dir:     o.CacheDir,
		byPage:  make(map[engineKey]*engine),
		plugins: make(map[*Plugin]struct{}),
		groups:  make(map[string]*vmGroup),
		metrics: newMetricsRegistry(),
	}
	rt.shared.init()
	rt.queues.init()
	return rt, nil
}

// engineKey tells wazero runtimes apart: the memory limit and the
// termination checks are runtime-wide settings.
type engineKey struct {
	pages   uint32
	trusted bool
	// interrupt: modules rewritten by package interrupt, stopped by their
	// own flag instead of wazero's termination checks.
	interrupt bool
}

// engineFor returns the wazero runtime for a memory limit and trust level,
// building it on first use. Untrusted modules are stopped at their
// callback deadline by their interrupt flag (interrupt: see package
// interrupt), or, when a module could not be rewritten, by wazero's
// termination checks.
func (rt *Runtime) engineFor(ctx context.Context, pages uint32, trusted, interrupt bool) (*engine, error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closed {
		return nil, errors.New("wasm runtime is closed")
	}
	key := engineKey{pages, trusted, interrupt}
	if e := rt.byPage[key]; e != nil {
		return e, nil
	}
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(rt.cache).
		WithMemoryLimitPages(pages).
		WithCloseOnContextDone(!trusted && !interrupt)
	r := wazero.NewRuntimeWithConfig(ctx, cfg)
	if err := instantiateHostModules(ctx, r, rt); err != nil {
		_ = r.Close(ctx)
		return nil, fmt.Errorf("wasm runtime: host modules: %w", err)
	}
	e := &engine{r: r, compiled: make(map[[32]byte]*compiledModule)}
	rt.byPage[key] = e
	return e, nil
}

// instantiateHostModules registers env (the Proxy-Wasm ABI and env.abort),
// wasi_snapshot_preview1 and wasi_unstable in r.
func instantiateHostModules(ctx context.Context, r wazero.Runtime, rt *Runtime) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		return fmt.Errorf("wasi_snapshot_preview1: %w", err)
	}
	// Old AssemblyScript (and @solo-io/proxy-runtime) import the
	// pre-preview1 name; the functions they use kept their signatures.
	wasiMod, err := wasi_snapshot_preview1.NewBuilder(r).Compile(ctx)
	if err != nil {
		return fmt.Errorf("wasi_unstable: %w", err)
	}
	if _, err := r.InstantiateModule(ctx, wasiMod, wazero.NewModuleConfig().WithName("wasi_unstable")); err != nil {
		return fmt.Errorf("wasi_unstable: %w", err)
	}
	b := r.NewHostModuleBuilder("env")
	registerABI(b)
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("env: %w", err)
	}
	return nil
}

// compile returns the compiled module for code, sharing it between plugins,
// with the data image its VMs' memories start from (image: the data
// segments taken out of code; nil when code keeps them).
func (e *engine) compile(ctx context.Context, code, image []byte) (wazero.CompiledModule, *dataImage, [32]byte, error) {
	sum := sha256.Sum256(code)
	if image != nil { // the same code with other data is another module
		h := sha256.New()
		h.Write(sum[:])
		h.Write(image)
		h.Sum(sum[:0])
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.compiled[sum]; c != nil {
		c.refs++
		return c.cm, c.image, sum, nil
	}
	var img *dataImage
	if image != nil {
		var err error
		if img, err = newDataImage(image); err != nil {
			return nil, nil, sum, err
		}
	}
	cm, err := e.r.CompileModule(ctx, code)
	if err != nil {
		if img != nil {
			img.close()
		}
		return nil, nil, sum, err
	}
	e.compiled[sum] = &compiledModule{cm: cm, image: img, refs: 1}
	return cm, img, sum, nil
}

// release drops a plugin's reference to a compiled module.
func (e *engine) release(sum [32]byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.compiled[sum]
	if c == nil {
		return
	}
	if c.refs--; c.refs <= 0 {
		delete(e.compiled, sum)
		_ = c.cm.Close(context.Background())
		if c.image != nil {
			c.image.close() // the VMs' mappings keep the memory they use
		}
	}
}

// Close stops every plugin still open (their ticks and background work;
// streams still in flight fail), then closes every wazero runtime and the
// compilation cache. Close plugins first to let their streams drain.
func (rt *Runtime) Close(ctx context.Context) error {
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return nil
	}
	rt.closed = true
	rt.release.stop()
	open := make([]*Plugin, 0, len(rt.plugins))
	for p := range rt.plugins {
		open = append(open, p)
	}
	rt.mu.Unlock()
	for _, p := range open {
		p.closing.Store(true)
		p.active.close() // no new streams
		p.stopBackground()
	}
	// Plugins closed earlier (replaced by a reload) end their VMs once
	// their last stream is done: wait for them (within ctx), so none
	// calls into a guest, or logs, after Close returns.
	closed := make(chan struct{})
	go func() {
		rt.closers.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
	}
	rt.shutdowns.Lock()
	defer rt.shutdowns.Unlock()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var errs []error
	for _, e := range rt.byPage {
		if err := e.r.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := rt.cache.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	rt.watchdog.stop()
	return errors.Join(errs...)
}

// Collector exports guest-defined metrics (proxy_define_metric:
// counter/gauge/histogram) and host events (traps, callback timeouts, VM
// replacements, fail-open/closed decisions) labelled by plugin.
func (rt *Runtime) Collector() prometheus.Collector { return runtimeCollector{rt} }
