package wasm

import (
	"fmt"
	"sync"
)

// sharedFuncs: shared data (with CAS) and shared queues.
func sharedFuncs() []abiFunc {
	return []abiFunc{
		{"proxy_get_shared_data", host(proxyGetSharedData), params(5)},
		{"proxy_set_shared_data", host(proxySetSharedData), params(5)},
		{"proxy_register_shared_queue", host(proxyRegisterSharedQueue), params(3)},
		{"proxy_resolve_shared_queue", host(proxyResolveSharedQueue), params(5)},
		{"proxy_enqueue_shared_queue", host(proxyEnqueueSharedQueue), params(3)},
		{"proxy_dequeue_shared_queue", host(proxyDequeueSharedQueue), params(3)},
	}
}

// sharedData is key/value data shared by the VMs of a vm_id, kept across
// plugin reloads (it lives in the Runtime).
type sharedData struct {
	mu   sync.Mutex
	byVM map[string]map[string]*sharedValue
}

type sharedValue struct {
	val []byte
	cas uint32
}

func (s *sharedData) init() { s.byVM = make(map[string]map[string]*sharedValue) }

// get copies the value of key into dst.
func (s *sharedData) get(vmID string, key []byte, dst []byte) ([]byte, uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byVM[vmID][string(key)]
	if e == nil {
		return dst, 0, false
	}
	return append(dst, e.val...), e.cas, true
}

// set stores val under key unless cas is non-zero and stale.
func (s *sharedData) set(vmID string, key, val []byte, cas uint32) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byVM[vmID]
	if m == nil {
		m = make(map[string]*sharedValue)
		s.byVM[vmID] = m
	}
	e := m[string(key)]
	if e == nil {
		e = &sharedValue{}
		m[string(key)] = e
	} else if cas != 0 && cas != e.cas {
		return statusCasMismatch
	}
	e.val = append(e.val[:0], val...)
	e.cas++
	if e.cas == 0 {
		e.cas = 1
	}
	return statusOK
}

// proxy_get_shared_data(key, klen, ret_val_ptr_ptr, ret_val_len_ptr, ret_cas_ptr)
func proxyGetSharedData(v *vm, st []uint64) uint32 {
	key, ok := v.read(uint32(st[0]), uint32(st[1]))
	casPtr := uint32(st[4])
	if !ok || !v.writable(casPtr, 4) {
		return statusInvalidMemoryAccess
	}
	val, cas, found := v.p.rt.shared.get(v.p.spec.VMID, key, v.scratch[:0])
	v.scratch = val
	if !found {
		return statusNotFound
	}
	if s := v.copyOut(val, uint32(st[2]), uint32(st[3])); s != statusOK {
		return s
	}
	v.writeU32(casPtr, cas)
	return statusOK
}

// proxy_set_shared_data(key, klen, val, vlen, cas)
func proxySetSharedData(v *vm, st []uint64) uint32 {
	key, ok1 := v.read(uint32(st[0]), uint32(st[1]))
	val, ok2 := v.read(uint32(st[2]), uint32(st[3]))
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	if len(key) == 0 {
		return statusBadArgument
	}
	return v.p.rt.shared.set(v.p.spec.VMID, key, val, uint32(st[4]))
}

// sharedQueues are named queues per vm_id. The VM that registered a queue
// last owns it and hears proxy_on_queue_ready.
type sharedQueues struct {
	mu     sync.Mutex
	byName map[string]uint32 // vm_id NUL name → id
	byID   map[uint32]*sharedQueue
	nextID uint32
}

type sharedQueue struct {
	id    uint32
	items [][]byte
	owner *vm
	// ownerP is the plugin whose context registered it: its root context
	// hears proxy_on_queue_ready (VMs may be shared).
	ownerP *Plugin
}

func (q *sharedQueues) init() {
	q.byName = make(map[string]uint32)
	q.byID = make(map[uint32]*sharedQueue)
	q.nextID = 1
}

func queueKey(vmID string, name []byte) string { return vmID + "\x00" + string(name) }

func (q *sharedQueues) register(owner *vm, name []byte) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := queueKey(owner.p.spec.VMID, name)
	if id, ok := q.byName[k]; ok {
		q.byID[id].owner, q.byID[id].ownerP = owner, owner.p
		return id
	}
	id := q.nextID
	q.nextID++
	q.byName[k] = id
	q.byID[id] = &sharedQueue{id: id, owner: owner, ownerP: owner.p}
	return id
}

func (q *sharedQueues) resolve(vmID string, name []byte) (uint32, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	id, ok := q.byName[queueKey(vmID, name)]
	return id, ok
}

// maxQueueItems bounds a queue nobody drains.
const maxQueueItems = 10000

func (q *sharedQueues) enqueue(id uint32, val []byte) (*vm, *Plugin, uint32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sq := q.byID[id]
	if sq == nil {
		return nil, nil, statusNotFound
	}
	if len(sq.items) >= maxQueueItems {
		return nil, nil, statusInternalFailure
	}
	sq.items = append(sq.items, append([]byte(nil), val...))
	return sq.owner, sq.ownerP, statusOK
}

func (q *sharedQueues) dequeue(id uint32) ([]byte, uint32) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sq := q.byID[id]
	if sq == nil {
		return nil, statusNotFound
	}
	if len(sq.items) == 0 {
		return nil, statusEmpty
	}
	it := sq.items[0]
	sq.items[0] = nil
	sq.items = sq.items[1:]
	return it, statusOK
}

// dropOwner forgets p's VMs as queue owners (the queues and their items
// stay for the next plugin of the same vm_id).
func (q *sharedQueues) dropOwner(p *Plugin) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, sq := range q.byID {
		if sq.ownerP == p {
			sq.owner, sq.ownerP = nil, nil
		}
	}
}

// proxy_register_shared_queue(name, nlen, ret_id_ptr)
func proxyRegisterSharedQueue(v *vm, st []uint64) uint32 {
	name, ok := v.read(uint32(st[0]), uint32(st[1]))
	if !ok || !v.writable(uint32(st[2]), 4) {
		return statusInvalidMemoryAccess
	}
	id := v.p.rt.queues.register(v, name)
	v.writeU32(uint32(st[2]), id)
	return statusOK
}

// proxy_resolve_shared_queue(vm_id, vlen, name, nlen, ret_id_ptr)
func proxyResolveSharedQueue(v *vm, st []uint64) uint32 {
	vmID, ok1 := v.read(uint32(st[0]), uint32(st[1]))
	name, ok2 := v.read(uint32(st[2]), uint32(st[3]))
	if !ok1 || !ok2 || !v.writable(uint32(st[4]), 4) {
		return statusInvalidMemoryAccess
	}
	id, ok := v.p.rt.queues.resolve(string(vmID), name)
	if !ok {
		return statusNotFound
	}
	v.writeU32(uint32(st[4]), id)
	return statusOK
}

// proxy_enqueue_shared_queue(id, val, vlen): the owner hears
// proxy_on_queue_ready later, on its own VM.
func proxyEnqueueSharedQueue(v *vm, st []uint64) uint32 {
	val, ok := v.read(uint32(st[1]), uint32(st[2]))
	if !ok {
		return statusInvalidMemoryAccess
	}
	id := uint32(st[0])
	owner, ownerP, s := v.p.rt.queues.enqueue(id, val)
	if s != statusOK {
		return s
	}
	if owner != nil && owner.onQueue != nil {
		ownerP.goAsync(func() { owner.queueReady(ownerP, id) })
	}
	return statusOK
}

// queueReady runs proxy_on_queue_ready on p's root context on v.
func (v *vm) queueReady(p *Plugin, id uint32) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.broken || v.root(p) == nil {
		return
	}
	v.enterRoot(p)
	if _, err := v.invoke(v.onQueue, uint64(p.rootCtx), uint64(id)); err != nil {
		v.breakLocked(fmt.Errorf("proxy_on_queue_ready: %w", err))
	}
	v.cur = nil
}

// proxy_dequeue_shared_queue(id, ret_ptr_ptr, ret_len_ptr)
func proxyDequeueSharedQueue(v *vm, st []uint64) uint32 {
	if !v.writable(uint32(st[1]), 4) || !v.writable(uint32(st[2]), 4) {
		return statusInvalidMemoryAccess
	}
	it, s := v.p.rt.queues.dequeue(uint32(st[0]))
	if s != statusOK {
		return s
	}
	return v.copyOut(it, uint32(st[1]), uint32(st[2]))
}
