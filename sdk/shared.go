package sdk

import "github.com/weftmesh/weft/sdk/internal/abi"

// GetSharedData reads a value shared by every VM with the same vm_id, with
// its CAS token. A missing key is StatusNotFound.
func GetSharedData(key string) ([]byte, uint32, error) {
	b, cas, st := abi.GetSharedData(key)
	return b, cas, statusErr(st)
}

// SetSharedData stores value under key. A non-zero cas makes the write
// conditional: StatusCasMismatch when someone wrote in between.
func SetSharedData(key string, value []byte, cas uint32) error {
	return statusErr(abi.SetSharedData(key, value, cas))
}

// Queue is a shared queue id.
type Queue uint32

// RegisterQueue creates (or finds) a queue owned by this plugin; the Plugin
// gets OnQueueReady when items arrive (QueueReceiver).
func RegisterQueue(name string) (Queue, error) {
	id, st := abi.RegisterSharedQueue(name)
	return Queue(id), statusErr(st)
}

// ResolveQueue finds a queue another VM registered.
func ResolveQueue(vmID, name string) (Queue, error) {
	id, st := abi.ResolveSharedQueue(vmID, name)
	return Queue(id), statusErr(st)
}

// Enqueue appends an item.
func (q Queue) Enqueue(item []byte) error {
	return statusErr(abi.EnqueueSharedQueue(uint32(q), item))
}

// Dequeue takes the oldest item; StatusEmpty when there is none.
func (q Queue) Dequeue() ([]byte, error) {
	b, st := abi.DequeueSharedQueue(uint32(q))
	return b, statusErr(st)
}
