package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/mesh"
)

// statusWriteTimeout bounds one status write.
const statusWriteTimeout = 10 * time.Second

// statusWriter writes status updates off the sync loop, one object at a
// time, the latest update of an object replacing one not yet written.
type statusWriter struct {
	log *zap.Logger

	mu      sync.Mutex
	pending map[string]pendingStatus
	order   []string
	written map[string]string // object → digest of the last successful write
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

type pendingStatus struct {
	u       StatusUpdate
	refused map[mesh.Key]error
	digest  string
}

func newStatusWriter(log *zap.Logger) *statusWriter {
	w := &statusWriter{log: log, pending: map[string]pendingStatus{}, written: map[string]string{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// queue schedules u with the refusals of its resources, unless the same
// status was last written.
func (w *statusWriter) queue(u StatusUpdate, refused map[mesh.Key]error) {
	mine := map[mesh.Key]error{}
	var reasons []string
	for _, k := range u.Resources {
		if err, ok := refused[k]; ok {
			mine[k] = err
			reasons = append(reasons, fmt.Sprintf("%s: %v", k, err))
		}
	}
	sort.Strings(reasons)
	digest := u.Digest + "\x00" + strings.Join(reasons, "\x00")
	w.mu.Lock()
	defer w.mu.Unlock()
	if u.Digest != "" && w.written[u.Object] == digest {
		delete(w.pending, u.Object)
		return
	}
	if _, ok := w.pending[u.Object]; !ok {
		w.order = append(w.order, u.Object)
	}
	w.pending[u.Object] = pendingStatus{u: u, refused: mine, digest: digest}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *statusWriter) run() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		for {
			w.mu.Lock()
			if len(w.order) == 0 {
				w.mu.Unlock()
				break
			}
			obj := w.order[0]
			w.order = w.order[1:]
			p, ok := w.pending[obj]
			delete(w.pending, obj)
			w.mu.Unlock()
			if !ok {
				continue
			}
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), statusWriteTimeout)
			go func() { // stop cancels a write in flight
				select {
				case <-w.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			err := p.u.Write(ctx, p.refused)
			cancel()
			w.mu.Lock()
			if err != nil {
				delete(w.written, obj)
				w.log.Warn("kube source: writing a status failed (retried at the next sync)", zap.String("object", obj), zap.Error(err))
			} else {
				w.written[obj] = p.digest
			}
			w.mu.Unlock()
		}
	}
}

func (w *statusWriter) close() {
	close(w.stop)
	<-w.done
}
