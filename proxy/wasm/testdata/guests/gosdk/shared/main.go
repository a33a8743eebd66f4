// Command shared is a conformance guest for shared data and shared queues.
//
// Request headers drive it:
//   - x-increment: add one to the shared counter with a compare-and-swap loop;
//     the new value goes upstream in x-counter-after.
//   - x-read-counter: the counter's value goes upstream in x-counter.
//   - x-enqueue: enqueue the header's value on the queue "events" (resolved
//     by the VM id given as plugin config); root contexts drain the queue in
//     on_queue_ready into the shared-data list "shared.drained"
//     ("drained:a,b,c").
//   - x-read-drained: that list goes upstream in x-drained.
package main

import (
	"errors"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const (
	counterKey = "shared.counter"
	drainedKey = "shared.drained"
	queueName  = "events"
	// drainedPrefix starts the drained list so the value is never empty.
	drainedPrefix = "drained:"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct {
	types.DefaultVMContext
}

func (*vm) NewPluginContext(uint32) types.PluginContext { return &root{} }

type root struct {
	types.DefaultPluginContext
	vmID    string
	queueID uint32
}

func (r *root) OnPluginStart(int) types.OnPluginStartStatus {
	cfg, err := proxywasm.GetPluginConfiguration()
	if err != nil || len(cfg) == 0 {
		proxywasm.LogCritical("shared: plugin config must be the VM id")
		return types.OnPluginStartStatusFailed
	}
	r.vmID = string(cfg)
	// Streams only run after every VM started, so concurrent initialisations
	// can only race with each other, and they all write "0".
	if _, _, err := proxywasm.GetSharedData(counterKey); errors.Is(err, types.ErrorStatusNotFound) {
		must(proxywasm.SetSharedData(counterKey, []byte("0"), 0))
	}
	if _, _, err := proxywasm.GetSharedData(drainedKey); errors.Is(err, types.ErrorStatusNotFound) {
		must(proxywasm.SetSharedData(drainedKey, []byte(drainedPrefix), 0))
	}
	r.queueID, err = proxywasm.RegisterSharedQueue(queueName)
	if err != nil {
		proxywasm.LogCriticalf("shared: register queue: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (r *root) OnQueueReady(queueID uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(queueID)
		if errors.Is(err, types.ErrorStatusEmpty) {
			return
		}
		must(err)
		item = append([]byte(nil), item...)
		update(drainedKey, func(old []byte) []byte {
			if len(old) > len(drainedPrefix) {
				old = append(old, ',')
			}
			return append(old, item...)
		})
	}
}

func (r *root) NewHttpContext(uint32) types.HttpContext { return &stream{root: r} }

type stream struct {
	types.DefaultHttpContext
	root *root
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if has("x-increment") {
		var after int
		retries := update(counterKey, func(old []byte) []byte {
			n, err := strconv.Atoi(string(old))
			if err != nil {
				panic("shared: counter is not a number: " + string(old))
			}
			after = n + 1
			return []byte(strconv.Itoa(after))
		})
		must(proxywasm.AddHttpRequestHeader("x-counter-after", strconv.Itoa(after)))
		must(proxywasm.AddHttpRequestHeader("x-cas-retries", strconv.Itoa(retries)))
	}
	if has("x-read-counter") {
		v, _, err := proxywasm.GetSharedData(counterKey)
		must(err)
		must(proxywasm.AddHttpRequestHeader("x-counter", string(v)))
	}
	if item, err := proxywasm.GetHttpRequestHeader("x-enqueue"); err == nil {
		id, err := proxywasm.ResolveSharedQueue(s.root.vmID, queueName)
		if err == nil {
			err = proxywasm.EnqueueSharedQueue(id, []byte(item))
		}
		if err != nil {
			must(proxywasm.SendHttpResponse(500, nil, []byte("enqueue: "+err.Error()), -1))
			return types.ActionPause
		}
	}
	if has("x-read-drained") {
		v, _, err := proxywasm.GetSharedData(drainedKey)
		must(err)
		must(proxywasm.AddHttpRequestHeader("x-drained", string(v)))
	}
	return types.ActionContinue
}

// update applies f to the value at key with a compare-and-swap loop and
// returns how many times it had to retry.
func update(key string, f func(old []byte) []byte) (retries int) {
	for {
		old, cas, err := proxywasm.GetSharedData(key)
		must(err)
		// Copy: the value lives in a host-allocated buffer we may append to.
		next := f(append([]byte(nil), old...))
		err = proxywasm.SetSharedData(key, next, cas)
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			retries++
			continue
		}
		must(err)
		return retries
	}
}

func has(name string) bool {
	_, err := proxywasm.GetHttpRequestHeader(name)
	return err == nil
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
