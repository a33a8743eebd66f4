package conformance_test

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/wasm"
)

// TestSharedDataCAS: 200 streams on 8 goroutines, spread over a pool of 2
// VMs, each increment one shared-data counter with a get/compare-and-swap
// loop. Lost updates or a CAS that does not detect a concurrent write would
// show as a final count below 200 or as duplicate values.
func TestSharedDataCAS(t *testing.T) {
	t.Parallel()
	const streams, workers = 200, 8
	spec := wasm.PluginSpec{Module: goGuest(t, "shared"), VMID: unique("vm-shared"), PoolSize: 2}
	spec.PluginConfig = []byte(spec.VMID)
	env := wasm.Env{}
	plugin := loadPlugin(t, spec, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	values := make(chan int, streams)
	errs := make(chan error, streams)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < streams; i += workers {
				res, err := px.do(request{Path: "/inc", Header: [][2]string{{"X-Increment", "1"}}})
				if err != nil {
					errs <- err
					continue
				}
				if res.Status != 200 || res.Upstream == nil {
					errs <- fmt.Errorf("status %d, body %q", res.Status, res.Body)
					continue
				}
				v, err := strconv.Atoi(res.Upstream.Get("x-counter-after"))
				if err != nil {
					errs <- fmt.Errorf("x-counter-after %q", res.Upstream.Get("x-counter-after"))
					continue
				}
				values <- v
			}
		})
	}
	wg.Wait()
	close(values)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var got []int
	for v := range values {
		got = append(got, v)
	}
	sort.Ints(got)
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("values after increment are not exactly 1..%d: position %d holds %d (duplicates mean a lost update)", streams, i, v)
		}
	}

	res := px.mustDo(t, request{Path: "/read", Header: [][2]string{{"X-Read-Counter", "1"}}})
	if res.Upstream == nil || res.Upstream.Get("x-counter") != strconv.Itoa(streams) {
		t.Fatalf("final counter %q, want %d", res.Upstream.Get("x-counter"), streams)
	}
}

// TestSharedQueue: streams enqueue items on a queue registered by the root
// contexts (resolved by VM id); the host calls on_queue_ready, and the
// roots drain it into shared data. Every item arrives exactly once.
func TestSharedQueue(t *testing.T) {
	t.Parallel()
	const items = 30
	spec := wasm.PluginSpec{Module: goGuest(t, "shared"), VMID: unique("vm-queue"), PoolSize: 2}
	spec.PluginConfig = []byte(spec.VMID)
	env := wasm.Env{}
	plugin := loadPlugin(t, spec, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	var wg sync.WaitGroup
	errs := make(chan error, items)
	for i := range items {
		wg.Go(func() {
			res, err := px.do(request{Path: "/enqueue", Header: [][2]string{{"X-Enqueue", fmt.Sprintf("item-%02d", i)}}})
			if err == nil && (res.Status != 200 || res.Upstream == nil) {
				err = fmt.Errorf("enqueue item-%02d: status %d, body %q", i, res.Status, res.Body)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	var drained []string
	eventually(t, 20*time.Second, "every enqueued item drained", func() (bool, string) {
		res, err := px.do(request{Path: "/drained", Header: [][2]string{{"X-Read-Drained", "1"}}})
		if err != nil || res.Upstream == nil {
			return false, fmt.Sprint(err)
		}
		list, ok := strings.CutPrefix(res.Upstream.Get("x-drained"), "drained:")
		if !ok {
			return false, "x-drained=" + res.Upstream.Get("x-drained")
		}
		drained = nil
		if list != "" {
			drained = strings.Split(list, ",")
		}
		return len(drained) >= items, fmt.Sprintf("%d drained", len(drained))
	})
	sort.Strings(drained)
	if len(drained) != items {
		t.Fatalf("drained %d items, want %d: %v", len(drained), items, drained)
	}
	for i, v := range drained {
		if want := fmt.Sprintf("item-%02d", i); v != want {
			t.Fatalf("drained[%d] = %q, want %q (each item exactly once): %v", i, v, want, drained)
		}
	}
}
