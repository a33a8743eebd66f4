package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// load is a bounded background load: workers goroutines, each sending at
// most perWorker requests, until Stop. startLoad stops it in t.Cleanup
// whatever the test's outcome, so a t.Fatal in the test never leaves
// workers running (and logging) after the test has completed. Workers
// never touch t: failures are kept and reported by Stop.
type load struct {
	t     testing.TB
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	total atomic.Int64

	mu       sync.Mutex
	failed   int64
	failures []string // the first few, for the log
}

// startLoad starts the workers. do sends one request with the worker's
// own client and returns "" on success, else why it failed.
func startLoad(t testing.TB, workers, perWorker int, do func(cl *fasthttp.Client) string) *load {
	t.Helper()
	l := &load{t: t, stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			cl := &fasthttp.Client{}
			defer cl.CloseIdleConnections()
			for i := 0; i < perWorker; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				why := do(cl)
				l.total.Add(1)
				if why != "" {
					l.mu.Lock()
					l.failed++
					if len(l.failures) < 20 {
						l.failures = append(l.failures, why)
					}
					l.mu.Unlock()
				}
			}
		}()
	}
	t.Cleanup(l.Stop)
	return l
}

// Total is the number of requests sent so far.
func (l *load) Total() int64 { return l.total.Load() }

// Stop stops the workers and waits for them; later calls do nothing.
func (l *load) Stop() {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, f := range l.failures {
			l.t.Logf("load: failed: %s", f)
		}
	})
}

// Failed stops the load and returns how many requests failed.
func (l *load) Failed() int64 {
	l.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// String reports the load's counts.
func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d of %d requests failed", l.failed, l.total.Load())
}
