package conformance_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/weftmesh/weft/proxy/wasm"
)

// TestPoolConcurrency: 200 streams on 8 goroutines share a pool of 2 VMs;
// every stream gets its own edits (no cross-talk between streams bound to
// the same VM) and all succeed. Run with -race.
func TestPoolConcurrency(t *testing.T) {
	t.Parallel()
	const streams, workers = 200, 8
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Module: goGuest(t, "headers"), PoolSize: 2}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < streams; i += workers {
				path := fmt.Sprintf("/s/%d", i)
				res, err := px.do(request{Path: path, Header: [][2]string{{"X-Remove-Me", "x"}}})
				switch {
				case err != nil:
					errs <- err
				case res.Status != 200 || res.Upstream == nil:
					errs <- fmt.Errorf("%s: status %d, body %q", path, res.Status, res.Body)
				case res.Upstream.URI != "/rewritten"+path:
					errs <- fmt.Errorf("%s: upstream saw %q", path, res.Upstream.URI)
				case res.Upstream.Get("x-seen-path") != path:
					errs <- fmt.Errorf("%s: guest saw :path %q (another stream's?)", path, res.Upstream.Get("x-seen-path"))
				case res.Upstream.Has("x-remove-me"):
					errs <- fmt.Errorf("%s: x-remove-me reached the upstream", path)
				case res.Get("x-weft-response") != "response-side":
					errs <- fmt.Errorf("%s: client missing x-weft-response", path)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 10 {
			t.Error(err)
		}
	}
	if n > 0 {
		t.Fatalf("%d of %d streams failed", n, streams)
	}
	if got := up.Count(); got != streams {
		t.Errorf("upstream received %d requests, want %d", got, streams)
	}
}
