package wasm

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// VM sharing, Envoy's way: plugins whose specs ask for it (ShareVMs) and
// agree on the vm_id, the module, the VM configuration and the VM limits
// run in one pool of VMs. Each plugin has its own root context in every VM
// of the pool (ids 1, 2, … in the order plugins joined), proxy_on_vm_start
// runs once per VM and proxy_on_configure once per plugin and VM. A plugin
// that leaves (closed after a reload) has its root context ended in every
// VM; the VMs close with the last plugin.
//
// Every plugin keeps its own name, configuration, failure policy, logger,
// metrics and tick period; a VM's `p` and `rootID` say whose callback runs
// now (enterRoot, enterStream), so host functions act for that plugin.

// vmGroup is a pool of VMs and the plugins that share it.
type vmGroup struct {
	key   string
	slots []*slot
	// unbuilt counts the slots of a growing pool that never had a VM
	// (GrowPool): pick builds one when every VM is busy.
	unbuilt atomic.Int32

	// mu guards members and is held while a VM of the group is built, so
	// a VM is always built with every member's root context.
	mu      sync.Mutex
	members []*Plugin
	dead    bool // the pool failed to build or its last member left
}

// rootState is one plugin's root context on one VM.
type rootState struct {
	p          *Plugin
	tickPeriod atomic.Int64 // nanoseconds; 0 = no ticks
	tickReset  atomic.Bool  // the period changed
	nextTick   time.Time    // the plugin's tick goroutine only
	// props are the properties the root declared (declare_property);
	// guarded by the VM's mu.
	props map[string]propertyDecl
	// callbacks are the stream callbacks the root's streams need, as the
	// guest said last (weft.stream_callbacks, abi_foreign_callbacks.go);
	// guarded by the VM's mu.
	callbacks    uint16
	callbacksSet bool
}

// groupKey names the pool a spec may share: "" when it runs alone.
func (s PluginSpec) groupKey() string {
	if !s.ShareVMs {
		return ""
	}
	h := sha256.New()
	mod := sha256.Sum256(s.Module)
	h.Write(mod[:])
	fmt.Fprintf(h, "|%q|%q|%d|%t|%d|%d|%t", s.VMID, s.VMConfig, s.PoolSize, s.GrowPool, s.MemoryLimitPages, s.CallbackTimeout, s.Trusted)
	return hex.EncodeToString(h.Sum(nil))
}

// joinGroup finds the live pool p may share, or registers a new one that
// p builds (build reports true). The returned group's mu is held.
func (rt *Runtime) joinGroup(p *Plugin) (g *vmGroup, build bool, err error) {
	key := p.spec.groupKey()
	for {
		rt.mu.Lock()
		if rt.closed {
			rt.mu.Unlock()
			return nil, false, errors.New("runtime is closed")
		}
		if key != "" {
			g = rt.groups[key]
		}
		if g == nil {
			g = &vmGroup{key: key}
			g.mu.Lock()
			if key != "" {
				rt.groups[key] = g
			}
			rt.mu.Unlock()
			return g, true, nil
		}
		rt.mu.Unlock()
		g.mu.Lock()
		if !g.dead {
			return g, false, nil
		}
		g.mu.Unlock()
		// A pool that died is replaced in the map by whoever builds next.
		rt.mu.Lock()
		if rt.groups[key] == g {
			delete(rt.groups, key)
		}
		rt.mu.Unlock()
	}
}

// Context ids: as in Envoy, one counter per VM numbers root and stream
// contexts alike (a lone plugin's root is 1 and its first stream 2). A
// plugin's root id is the same in every VM of the pool: a VM is built with
// its counter past every member's root, and a joining plugin takes an id
// past every VM's counter (joinVMs).

// nextIDAfter is the first stream id of a VM built with members' roots.
func nextIDAfter(members []*Plugin) uint32 {
	var top uint32
	for _, m := range members {
		top = max(top, m.rootCtx)
	}
	return top + 1
}

// dropLocked forgets the group in rt once it died. The caller holds g.mu.
func (g *vmGroup) dropLocked(rt *Runtime) {
	g.dead = true
	if g.key == "" {
		return
	}
	rt.mu.Lock()
	if rt.groups[g.key] == g {
		delete(rt.groups, g.key)
	}
	rt.mu.Unlock()
}

// leader is the member whose settings rebuild a VM (every member agrees
// on them); nil once the group is empty. The caller holds g.mu.
func (g *vmGroup) leader() *Plugin {
	if len(g.members) == 0 {
		return nil
	}
	return g.members[0]
}

// addRoot creates p's root context on v and configures it. The caller
// holds v.mu.
func (v *vm) addRoot(p *Plugin) error {
	v.roots.Store(p.rootCtx, &rootState{p: p})
	v.forgetRoot(p)
	v.enterRoot(p)
	// Under the start deadline, as on_configure is when a VM starts.
	v.starting.Store(true)
	defer v.starting.Store(false)
	if _, err := v.invoke(v.onContextCreate, uint64(p.rootCtx), 0); err != nil {
		return fmt.Errorf("proxy_on_context_create(root %d): %w", p.rootCtx, err)
	}
	if v.onConfigure != nil {
		ok, err := v.invoke(v.onConfigure, uint64(p.rootCtx), uint64(len(p.spec.PluginConfig)))
		if err != nil {
			return fmt.Errorf("proxy_on_configure: %w", err)
		}
		if uint32(ok) == 0 {
			return fmt.Errorf("%w%s", errConfigureRefused, v.startReason())
		}
	}
	return nil
}

// errConfigureRefused: proxy_on_configure answered false; the VM is fine.
var errConfigureRefused = errors.New("proxy_on_configure returned false")

// endRoot runs proxy_on_done and proxy_on_delete on p's root context and
// forgets it. The caller holds v.mu.
func (v *vm) endRoot(p *Plugin) {
	if !v.broken {
		v.enterRoot(p)
		if v.onDone != nil {
			if _, err := v.invoke(v.onDone, uint64(p.rootCtx)); err != nil {
				p.log.Debug("wasm root proxy_on_done failed", zap.Error(err))
			}
		}
		if v.onDelete != nil && !v.broken {
			_, _ = v.invoke(v.onDelete, uint64(p.rootCtx))
		}
	}
	v.roots.Delete(p.rootCtx)
	v.forgetRoot(p)
}

// forgetRoot drops streamCallbacks' cached root state of p (its root
// context was replaced or ended). The caller holds v.mu.
func (v *vm) forgetRoot(p *Plugin) {
	if v.lastRoot != nil && v.lastRoot.p == p {
		v.lastRoot = nil
	}
}

// root is p's root context state on v (nil when p has none there).
func (v *vm) root(p *Plugin) *rootState {
	r, _ := v.roots.Load(p.rootCtx)
	rs, _ := r.(*rootState)
	if rs == nil || rs.p != p {
		return nil
	}
	return rs
}

// enterRoot makes p's root context the one host calls act on. The caller
// holds v.mu.
func (v *vm) enterRoot(p *Plugin) {
	v.cur, v.p, v.rootID = nil, p, p.rootCtx
}

// enterStream makes f the context host calls act on. The caller holds v.mu.
func (v *vm) enterStream(f *streamFilter) {
	v.cur, v.p, v.rootID = f, f.p, f.p.rootCtx
}

// joinVMs gives p a root context id past every VM's counter and adds the
// root to every VM of a live pool, holding all their locks so no stream
// takes the id meanwhile. A VM being rebuilt gets the root from the
// rebuild, which waits for g.mu. On failure p's root is ended where it was
// added. The caller holds g.mu.
func (g *vmGroup) joinVMs(p *Plugin) error {
	var vms []*vm
	id := nextIDAfter(g.members)
	for _, s := range g.slots {
		if v := s.vm.Load(); v != nil {
			v.mu.Lock()
			if v.broken {
				v.mu.Unlock()
				continue
			}
			vms = append(vms, v)
			id = max(id, v.nextID)
		}
	}
	defer func() {
		for _, v := range vms {
			v.mu.Unlock()
		}
	}()
	p.rootCtx = id
	for i, v := range vms {
		v.nextID = id + 1
		v.startLog = []string{}
		err := v.addRoot(p)
		v.startLog = nil
		if err == nil {
			continue
		}
		if !errors.Is(err, errConfigureRefused) { // a trap or a timeout
			v.breakLocked(err)
		}
		v.endRoot(p) // the guest may hold a root it did not configure
		v.enterRoot(g.leader())
		for _, d := range vms[:i] {
			d.endRoot(p)
			d.enterRoot(g.leader())
		}
		return fmt.Errorf("vm %d: %w", v.slot.idx, err)
	}
	return nil
}

// leave takes p out of its group: its root context ends on every VM; the
// last member closes the VMs.
func (p *Plugin) leave() {
	g := p.group
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, m := range g.members {
		if m == p {
			g.members = append(g.members[:i:i], g.members[i+1:]...)
			break
		}
	}
	if len(g.members) == 0 {
		g.dropLocked(p.rt)
		for _, s := range g.slots {
			if v := s.vm.Swap(nil); v != nil {
				v.shutdown()
			}
		}
		return
	}
	for _, s := range g.slots {
		if v := s.vm.Load(); v != nil {
			v.mu.Lock()
			v.endRoot(p)
			v.mu.Unlock()
		} else if !s.unbuilt.Load() {
			// p's own rebuild stopped with p; hand the slot to the others.
			s.startRebuild(g.leader(), nil, false)
		}
	}
}

// rebuild builds a VM for the empty slot with every member's root context
// and stores it; gone reports that the group has no member left to build
// for.
func (s *slot) rebuild() (gone bool, err error) {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	lead := g.leader()
	if g.dead || lead == nil {
		return true, nil
	}
	v, err := lead.newVM(s)
	if err != nil {
		return false, err
	}
	s.vm.Store(v)
	for _, m := range g.members {
		m.wakeTicks()
	}
	return false, nil
}
