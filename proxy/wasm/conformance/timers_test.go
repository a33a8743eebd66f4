package conformance_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/wasm"
)

// TestTimers: the root context's tick (proxy_set_tick_period_milliseconds)
// fires: it bumps a shared-data counter that streams can read, and it resumes
// streams paused waiting for it (proxy_set_effective_context +
// proxy_continue_stream from on_tick), with header edits applied first.
func TestTimers(t *testing.T) {
	t.Parallel()
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Module: goGuest(t, "timers"), PluginConfig: []byte("20")}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	t.Run("ticks run", func(t *testing.T) {
		eventually(t, 20*time.Second, "shared tick counter reaches 3", func() (bool, string) {
			res, err := px.do(request{Path: "/ticks", Header: [][2]string{{"X-Read-Ticks", "1"}}})
			if err != nil || res.Upstream == nil {
				return false, fmt.Sprint(err)
			}
			n, err := strconv.Atoi(res.Upstream.Get("x-ticks"))
			return err == nil && n >= 3, "x-ticks=" + res.Upstream.Get("x-ticks")
		})
	})

	t.Run("a tick resumes paused streams", func(t *testing.T) {
		const n = 6
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				res, err := px.do(request{Path: fmt.Sprintf("/wait/%d", i), Header: [][2]string{{"X-Wait-For-Tick", "1"}}})
				switch {
				case err != nil:
					errs <- err
				case res.Status != 200 || res.Upstream == nil:
					errs <- fmt.Errorf("stream %d: status %d, body %q", i, res.Status, res.Body)
				case res.Upstream.Get("x-resumed-by") != "tick":
					errs <- fmt.Errorf("stream %d: upstream x-resumed-by %q, want tick", i, res.Upstream.Get("x-resumed-by"))
				case res.Upstream.Get("x-root-ticks") == "":
					errs <- fmt.Errorf("stream %d: no x-root-ticks", i)
				case res.Trace.RequestHeaders != filter.Continue:
					errs <- fmt.Errorf("stream %d: OnRequestHeaders returned %v, want Continue", i, res.Trace.RequestHeaders)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestPausedStreamReleasesTheVM: with a pool of one VM, a stream paused in
// on_request_headers does not hold the VM: other streams run through the
// same VM while it waits, and it completes only when the guest resumes it
// (a tick after another stream set the release flag).
func TestPausedStreamReleasesTheVM(t *testing.T) {
	t.Parallel()
	env := wasm.Env{}
	plugin := loadPlugin(t, wasm.PluginSpec{Module: goGuest(t, "timers"), PluginConfig: []byte("20"), PoolSize: 1}, env)
	up := startBackend(t, nil)
	px := startProxy(t, plugin, up, env)

	type outcome struct {
		res *result
		err error
	}
	held := make(chan outcome, 1)
	go func() {
		res, err := px.do(request{Path: "/held", Header: [][2]string{{"X-Wait-For-Release", "1"}}})
		held <- outcome{res, err}
	}()
	eventually(t, 20*time.Second, "the held stream is paused in the guest", func() (bool, string) {
		res, err := px.do(request{Path: "/probe", Header: [][2]string{{"X-Read-Waiting", "1"}}})
		if err != nil || res.Upstream == nil {
			return false, fmt.Sprint(err)
		}
		return res.Upstream.Get("x-held") == "1", "x-held=" + res.Upstream.Get("x-held")
	})
	for i := range 5 {
		res := px.mustDo(t, request{Path: fmt.Sprintf("/other/%d", i)})
		if res.Status != 200 || res.Upstream == nil {
			t.Fatalf("stream %d next to a paused one: status %d", i, res.Status)
		}
	}
	select {
	case o := <-held:
		t.Fatalf("the held stream finished before its release: %+v %v", o.res, o.err)
	default:
	}

	px.mustDo(t, request{Path: "/release", Header: [][2]string{{"X-Release", "1"}}})
	var o outcome
	select {
	case o = <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the held stream was not resumed within 30s of its release")
	}
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.res.Status != 200 || o.res.Upstream == nil || o.res.Upstream.Get("x-resumed-by") != "release" {
		t.Fatalf("held stream: status %d, upstream saw it: %v", o.res.Status, o.res.Upstream != nil)
	}
}
