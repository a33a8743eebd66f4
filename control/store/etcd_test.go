package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/internal/etcdtest"
	"github.com/weftmesh/weft/control/mesh"
)

// replicaOn opens a store on its own etcd client, as a separate control
// plane process would; close ends both.
func replicaOn(t *testing.T, c *etcdtest.Cluster, o Options) (s *Store, close func()) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	if o.Compile == nil {
		o.Compile = compile
	}
	o.Backend = NewEtcdBackend(cli, EtcdOptions{})
	if s, err = Open(o); err != nil {
		_ = cli.Close()
		t.Fatal(err)
	}
	done := false
	close = func() {
		if !done {
			done = true
			_ = s.Close()
			_ = cli.Close()
		}
	}
	t.Cleanup(close)
	return s, close
}

func waitRev(t *testing.T, s *Store, rev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
}

func split(t testing.TB, v2 int) []*mesh.Resource {
	return res(t, fmt.Sprintf(`kind: TrafficRule
name: web
spec:
  service: web
  routes: [{name: all, split: [{version: v1, weight: %d}, {version: v2, weight: %d}]}]`, 100-v2, v2))
}

const web = `kind: Service
name: web
spec:
  versions:
    - {name: v1, endpoints: [{address: "127.0.0.1:1"}]}
    - {name: v2, endpoints: [{address: "127.0.0.1:2"}]}
---
kind: Sidecar
name: n1
spec: {outbound: "127.0.0.1:0"}
`

func v2Weight(s *Store) int {
	o, ok := s.Get(mesh.Key{Kind: mesh.KindTrafficRule, Namespace: "default", Name: "web"})
	if !ok {
		return -1
	}
	for _, sp := range o.Resource.TrafficRule().Routes[0].Split {
		if sp.Version == "v2" {
			return sp.Weight
		}
	}
	return -1
}

// A write through replica B reaches replica A through etcd's watch, with
// the same node version on both; propagation is measured.
func TestEtcdReplicasPropagate(t *testing.T) {
	c := etcdtest.Start(t, 3)
	a, _ := replicaOn(t, c, Options{})
	b, _ := replicaOn(t, c, Options{})
	r, err := b.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, web)})
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, a, r.Revision)
	if a.Node("n1").Version != b.Node("n1").Version || string(a.Node("n1").Body) != string(b.Node("n1").Body) {
		t.Fatalf("replicas disagree: A %s, B %s", a.Node("n1").Version, b.Node("n1").Version)
	}
	const n = 40
	lat := make([]time.Duration, 0, n)
	for i := 1; i <= n; i++ {
		changed := a.Changed()
		start := time.Now()
		r, err := b.Apply(Change{Who: "t", Source: SourceAPI, Puts: split(t, i)})
		if err != nil {
			t.Fatal(err)
		}
		for a.Revision() < r.Revision {
			select {
			case <-changed:
				changed = a.Changed()
			case <-time.After(30 * time.Second):
				t.Fatalf("replica A never saw revision %d", r.Revision)
			}
		}
		lat = append(lat, time.Since(start))
		if v2Weight(a) != i || a.Node("n1").Version != b.Node("n1").Version {
			t.Fatalf("write %d: A has weight %d, version %s; B version %s", i, v2Weight(a), a.Node("n1").Version, b.Node("n1").Version)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("write on B to applied on A, 3 etcd members, %d writes: p50 %v, p99 %v", n, lat[n/2], lat[n*99/100])
}

// Stop one member of three: writes continue. Stop a second: writes fail
// with an error that says so, and replicas keep serving the last state.
// Restart them: writes succeed again and every replica converges.
func TestEtcdQuorumLossAndRecovery(t *testing.T) {
	c := etcdtest.Start(t, 3)
	a, _ := replicaOn(t, c, Options{WriteTimeout: 3 * time.Second})
	b, _ := replicaOn(t, c, Options{WriteTimeout: 3 * time.Second})
	if _, err := a.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, web)}); err != nil {
		t.Fatal(err)
	}

	c.Stop(0)
	r, err := applyEventually(t, b, split(t, 10))
	if err != nil {
		t.Fatalf("a write with one member of three down: %v", err)
	}
	waitRev(t, a, r.Revision)

	c.Stop(1)
	last := a.Node("n1")
	_, err = a.Apply(Change{Who: "t", Source: SourceAPI, Puts: split(t, 20)})
	var ue *UnavailableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "majority") {
		t.Fatalf("a write without a quorum: %v", err)
	}
	t.Logf("without a quorum: %v", err)
	if a.Node("n1") != last || v2Weight(a) != 10 || v2Weight(b) != 10 {
		t.Fatalf("replicas must keep serving the last state: weights %d/%d", v2Weight(a), v2Weight(b))
	}

	c.Restart(0, 1)
	r, err = applyEventually(t, a, split(t, 30))
	if err != nil {
		t.Fatalf("a write after the quorum came back: %v", err)
	}
	waitRev(t, b, r.Revision)
	if v2Weight(b) != 30 || a.Node("n1").Version != b.Node("n1").Version {
		t.Fatalf("after recovery: B weight %d, versions %s/%s", v2Weight(b), a.Node("n1").Version, b.Node("n1").Version)
	}
}

// applyEventually retries a write the store could not commit (a leader
// election in progress); any other error ends it.
func applyEventually(t *testing.T, s *Store, rs []*mesh.Resource) (Result, error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: rs})
		var ue *UnavailableError
		if err == nil || !errors.As(err, &ue) || time.Now().After(deadline) {
			return r, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A replica killed in the middle of a stream of weight changes: the writer
// moves to another replica, and a third replica sees every weight in
// order, never one older than the last it saw, ending on the last one.
func TestEtcdReplicaKilledUnderWeightChanges(t *testing.T) {
	c := etcdtest.Start(t, 3)
	a, killA := replicaOn(t, c, Options{})
	b, _ := replicaOn(t, c, Options{})
	obs, _ := replicaOn(t, c, Options{})
	if _, err := a.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, web)}); err != nil {
		t.Fatal(err)
	}
	seen := make(chan []int, 1)
	stop := make(chan struct{})
	var stopOnce sync.Once
	finished := make(chan struct{})
	stopObserver := func() { stopOnce.Do(func() { close(stop) }); <-finished }
	// The observer stops whatever the outcome, before the replicas'
	// cleanups (registered earlier) run.
	t.Cleanup(stopObserver)
	go func() {
		defer close(finished)
		var ws []int
		for {
			changed := obs.Changed()
			if w := v2Weight(obs); w >= 0 && (len(ws) == 0 || ws[len(ws)-1] != w) {
				ws = append(ws, w)
			}
			select {
			case <-changed:
			case <-stop:
				seen <- ws
				return
			}
		}
	}()
	const n = 60
	var lastRev int64
	writer := a
	for i := 1; i <= n; i++ {
		if i == n/2 {
			killA()
		}
		r, err := writer.Apply(Change{Who: "t", Source: SourceAPI, Puts: split(t, i)})
		if err != nil && writer == a && i >= n/2 {
			writer = b // the killed replica's client moves on, and retries
			r, err = writer.Apply(Change{Who: "t", Source: SourceAPI, Puts: split(t, i)})
		}
		if err != nil {
			t.Fatalf("weight %d: %v", i, err)
		}
		if r.Revision < lastRev {
			t.Fatalf("weight %d committed at revision %d, before the previous one (%d)", i, r.Revision, lastRev)
		}
		lastRev = r.Revision
	}
	waitRev(t, obs, lastRev)
	stopObserver()
	ws := <-seen
	for i := 1; i < len(ws); i++ {
		if ws[i] < ws[i-1] {
			t.Fatalf("the observer saw weight %d after %d: %v", ws[i], ws[i-1], ws)
		}
	}
	if ws[len(ws)-1] != n || v2Weight(b) != n {
		t.Fatalf("final weight: observer %d, B %d, want %d", ws[len(ws)-1], v2Weight(b), n)
	}
	t.Logf("observer saw %d of %d weights, in order", len(ws), n)
}

// A revision another replica committed that does not compile here (a
// module only that replica has) leaves this replica on its last good
// state, says so in Status, and it catches up with the next revision.
func TestEtcdReplicaBehindSaysSo(t *testing.T) {
	c := etcdtest.Start(t, 1)
	strict := func(m *mesh.Mesh) (map[string]*mesh.NodeConfig, error) {
		if m.Get(mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "b"}) != nil {
			return nil, errors.New("service b needs a module this replica lacks")
		}
		return compile(m)
	}
	a, _ := replicaOn(t, c, Options{Compile: strict})
	b, _ := replicaOn(t, c, Options{})
	r1, err := b.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, svc)})
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, a, r1.Revision)
	r2, err := b.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, "kind: Service\nname: b\nspec: {endpoints: [{address: '127.0.0.1:2'}]}")})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for a.Status().StuckAt != r2.Revision {
		if time.Now().After(deadline) {
			t.Fatalf("replica A's status: %+v", a.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := a.Status(); st.Backend != "etcd" || !strings.Contains(st.Error, "lacks") || a.Revision() != r1.Revision {
		t.Fatalf("replica A: %+v at revision %d", st, a.Revision())
	}
	// A write through the stuck replica is refused, saying why, rather
	// than planned on a state that is no longer the latest.
	_, err = a.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, "kind: Service\nname: c\nspec: {endpoints: [{address: '127.0.0.1:3'}]}")})
	var ue *UnavailableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "cannot load revision") {
		t.Fatalf("a write through a replica behind: %v", err)
	}
	r3, err := b.Apply(Change{Who: "t", Source: SourceAPI, Deletes: []Delete{{Key: mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "b"}}}})
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, a, r3.Revision)
	if st := a.Status(); st.StuckAt != 0 || st.Error != "" {
		t.Fatalf("replica A caught up but says %+v", st)
	}
}

// A change bigger than one etcd transaction is refused before it is sent;
// one that changes every sidecar's config is still two keys.
func TestEtcdChangeTooBig(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := openStore(t, Options{Backend: NewEtcdBackend(c.Client(), EtcdOptions{MaxTxnOps: 3})})
	_, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, svc)}) // 3 resources + head
	var tb *TooBigError
	if !errors.As(err, &tb) || tb.Keys != 4 || tb.Max != 3 || s.Revision() != 0 {
		t.Fatalf("a 4-key change with --max-txn-ops 3: %v", err)
	}
	var sidecars strings.Builder
	for i := 0; i < 2; i++ {
		fmt.Fprintf(&sidecars, "kind: Sidecar\nname: n%d\nspec: {outbound: '127.0.0.1:0'}\n---\n", i)
	}
	if _, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, sidecars.String())}); err != nil {
		t.Fatal(err)
	}
	// A new service changes both sidecars' configs: one resource and the head.
	r, err := s.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, "kind: Service\nname: a\nspec: {endpoints: [{address: '127.0.0.1:1'}]}")})
	if err != nil {
		t.Fatal(err)
	}
	if v := strconv.FormatInt(r.Revision, 10); s.Node("n0").Version != v || s.Node("n1").Version != v {
		t.Fatalf("node versions %s/%s, want %s", s.Node("n0").Version, s.Node("n1").Version, v)
	}
}

// TestEtcdReplicaBehindRetries: a replica that could not compile a
// revision committed elsewhere (it lacked a module) installs it as soon as
// Retry is called once what it lacked is there, without a new commit.
func TestEtcdReplicaBehindRetries(t *testing.T) {
	c := etcdtest.Start(t, 1)
	var lacks atomic.Bool
	lacks.Store(true)
	strict := func(m *mesh.Mesh) (map[string]*mesh.NodeConfig, error) {
		if lacks.Load() && m.Get(mesh.Key{Kind: mesh.KindService, Namespace: "default", Name: "b"}) != nil {
			return nil, errors.New("service b needs a module this replica lacks")
		}
		return compile(m)
	}
	a, _ := replicaOn(t, c, Options{Compile: strict})
	b, _ := replicaOn(t, c, Options{})
	a.Retry() // not behind: nothing to do
	r, err := b.Apply(Change{Who: "t", Source: SourceAPI, Puts: res(t, "kind: Service\nname: b\nspec: {endpoints: [{address: '127.0.0.1:2'}]}")})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for a.Status().StuckAt != r.Revision {
		if time.Now().After(deadline) {
			t.Fatalf("replica A's status: %+v", a.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.Retry() // still lacking: still behind
	if a.Revision() >= r.Revision || a.Status().StuckAt != r.Revision {
		t.Fatalf("replica A at %d, status %+v: a retry that still fails moved it", a.Revision(), a.Status())
	}
	lacks.Store(false)
	a.Retry()
	if a.Revision() != r.Revision || a.Status().StuckAt != 0 {
		t.Fatalf("replica A at %d, status %+v after the retry; want revision %d", a.Revision(), a.Status(), r.Revision)
	}
}
