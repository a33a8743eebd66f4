package control_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/internal/etcdtest"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/control/store"
)

func caKey(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// Two control-plane replicas on a three-member etcd: they share one CA,
// sealed in etcd; sidecars watching replica A apply changes written
// through replica B; with a majority of etcd down, writes fail with 503
// and a clear message while sidecars keep serving; once etcd is back,
// writes succeed and sidecars converge.
func TestReplicasOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 3)
	key := caKey(t)
	a := meshtest.StartControl(t, server.Options{DataDir: t.TempDir(), Etcd: c.Client(), CAEncryptionKey: key})
	defer a.Close()
	b := meshtest.StartControl(t, server.Options{DataDir: t.TempDir(), Etcd: c.Client(), CAEncryptionKey: key, StoreWriteTimeout: 3 * time.Second})
	defer b.Close()
	if a.CAFingerprint() != b.CAFingerprint() {
		t.Fatalf("replicas run different CAs: %s and %s", a.CAFingerprint(), b.CAFingerprint())
	}
	resp, err := c.Client().Get(context.Background(), "/weft/secrets/ca")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the sealed CA in etcd: %v", err)
	}
	if v := string(resp.Kvs[0].Value); strings.Contains(v, "PRIVATE KEY") || strings.Contains(v, "BEGIN") || !strings.HasPrefix(v, "weft-sealed-v1:") {
		t.Fatalf("the CA is not sealed in etcd: %.60q", v)
	}
	// A replica without the key, or with another, refuses to start.
	_, err = server.Start(context.Background(), server.Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Etcd: c.Client()})
	if err == nil || !strings.Contains(err.Error(), "-ca-encryption-key-file") {
		t.Fatalf("a replica without the CA key: %v", err)
	}
	_, err = server.Start(context.Background(), server.Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Etcd: c.Client(), CAEncryptionKey: caKey(t)})
	if err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Fatalf("a replica with the wrong CA key: %v", err)
	}

	// A rotation on A is sealed into etcd, and B follows it: both bundles
	// then hold the old and the new root.
	if code, out := meshtest.Do(t, "POST", a.URL()+"/v1/ca/rotate", ""); code != 200 {
		t.Fatalf("rotate on A: %d %s", code, out)
	}
	meshtest.Eventually(t, "B to trust A's new root", func() bool {
		roots, err := client.LoadCA(b.CAFile())
		return err == nil && len(roots) == 2
	})
	if ra, rb := meshtest.Roots(t, a), meshtest.Roots(t, b); len(ra) != 2 || !ra[0].Equal(rb[0]) && !ra[0].Equal(rb[1]) {
		t.Fatalf("after a rotation the replicas' bundles differ: %d and %d roots", len(ra), len(rb))
	}

	// Concurrent applies through both replicas' APIs: none is lost. B's
	// 3 s write timeout is there for the write without a quorum below; on
	// a loaded machine (-race, three etcd members in this process) a
	// commit contending with A's can take longer, and B answers 503 "store
	// unavailable" (nothing changed, or not confirmed and safe to retry).
	// A client retries that, and so does this one: what is checked is
	// that no change is lost, not how fast a commit is.
	var wg sync.WaitGroup
	var retried atomic.Int32
	const applies = 24
	for i := 0; i < applies; i++ {
		rep := []*server.Server{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			y := fmt.Sprintf("kind: Service\nname: c%02d\nspec: {endpoints: [{address: '127.0.0.1:%d'}]}", i, 2000+i)
			for deadline := time.Now().Add(60 * time.Second); ; retried.Add(1) {
				code, out := meshtest.Do(t, "POST", rep.URL()+"/v1/apply", y, "Content-Type", "application/yaml")
				if code == 200 {
					return
				}
				if code != 503 || !strings.Contains(out, "store unavailable") || time.Now().After(deadline) {
					t.Errorf("apply %d: %d %s", i, code, out)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := retried.Load(); n > 0 {
		t.Logf("%d applies were retried after a 503 (B's store write timed out)", n)
	}
	meshtest.Eventually(t, "both replicas to hold every applied service", func() bool {
		return len(a.Store().List(mesh.KindService)) == applies && len(b.Store().List(mesh.KindService)) == applies
	})

	up1, up2 := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	if code, out := meshtest.Do(t, "POST", b.URL()+"/v1/apply", meshYAML(up1.Addr, up2.Addr, 100, 0, "s1", "s2")); code != 200 {
		t.Fatalf("apply through B: %d %s", code, out)
	}
	s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: a.URL()})
	s2 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s2", URL: a.URL()})
	waitBody(t, s1, "200 a")
	waitBody(t, s2, "200 a")

	if code, out := putRule(t, b.URL(), 0, 100, 0); code != 200 {
		t.Fatalf("PUT through B: %d %s", code, out)
	}
	want := strconv.FormatInt(b.Store().Revision(), 10)
	meshtest.Eventually(t, "sidecars on A to apply B's change", func() bool { return s1.Proxy.Version() == want && s2.Proxy.Version() == want })
	waitBody(t, s1, "200 b")

	c.Stop(0)
	c.Stop(1)
	code, out := putRule(t, b.URL(), 100, 0, 0)
	if code != 503 || !strings.Contains(out, "majority") || !strings.Contains(out, "store unavailable") {
		t.Fatalf("a write without an etcd quorum: %d %s", code, out)
	}
	t.Logf("without a quorum: %d %s", code, strings.TrimSpace(out))
	for i := 0; i < 20; i++ {
		if got := body(t, s1, "orders"); got != "200 b" {
			t.Fatalf("a sidecar stopped serving its last config without a quorum: %q", got)
		}
	}

	c.Restart(0, 1)
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, out = putRule(t, b.URL(), 100, 0, 0)
		if code == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != 200 {
		t.Fatalf("a write after etcd recovered: %d %s", code, out)
	}
	want = strconv.FormatInt(b.Store().Revision(), 10)
	meshtest.Eventually(t, "sidecars to converge after etcd recovered", func() bool { return s1.Proxy.Version() == want && s2.Proxy.Version() == want })
	waitBody(t, s2, "200 a")
}

// TestPropagationReplicas measures, in one run, how long a weight change
// takes from the API call to every sidecar applying it: one replica on the
// file store, one replica on etcd, and written through replica B of three
// on etcd while the sidecars watch replica A (all in this one process, on
// the same cores as the sidecars and the load). Figures are logged
// (go test -run PropagationReplicas -v ./control/), not asserted; no
// request through the sidecars may fail.
func TestPropagationReplicas(t *testing.T) {
	const changes = 20
	// WEFT_PROPAGATION_SIDECARS=100 measures the issue's 100 sidecars (a
	// minute or more on two cores); the default keeps go test ./... quick.
	sidecars := 10
	if n, err := strconv.Atoi(os.Getenv("WEFT_PROPAGATION_SIDECARS")); err == nil && n > 0 {
		sidecars = n
	}
	up1, up2 := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	c := etcdtest.Start(t, 3)
	key := caKey(t)
	file := meshtest.StartControl(t, server.Options{DataDir: t.TempDir()})
	defer file.Close()
	// The single etcd replica has a prefix of its own: replicas on one
	// prefix all compile every revision, and in this test they share the
	// machine's cores.
	single := meshtest.StartControl(t, server.Options{DataDir: t.TempDir(), Etcd: c.Client(), CAEncryptionKey: key, EtcdPrefix: "/single/"})
	defer single.Close()
	var reps []*server.Server
	for i := 0; i < 3; i++ {
		r := meshtest.StartControl(t, server.Options{DataDir: t.TempDir(), Etcd: c.Client(), CAEncryptionKey: key, EtcdPrefix: "/prop/"})
		defer r.Close()
		reps = append(reps, r)
	}
	for _, run := range []struct {
		name         string
		write, watch *server.Server
	}{
		{"file store, one replica", file, file},
		{"etcd, one replica", single, single},
		{"etcd, written on B, sidecars on A (3 replicas)", reps[1], reps[0]},
	} {
		p50, p99, api, sent := propagate(t, run.write, run.watch, up1.Addr, up2.Addr, run.name, sidecars, changes)
		t.Logf("%s: %d sidecars, %d changes, %d requests meanwhile, none failed: p50 %v, p99 %v (the API call alone: p50 %v)", run.name, sidecars, changes, sent, p50, p99, api)
	}
}

var runSeq atomic.Int64

func propagate(t *testing.T, write, watch *server.Server, v1, v2, name string, n, changes int) (p50, p99, api50 time.Duration, sent int64) {
	t.Helper()
	seq := runSeq.Add(1)
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, fmt.Sprintf("r%d-s%02d", seq, i))
	}
	if code, out := meshtest.Do(t, "POST", write.URL()+"/v1/apply", meshYAML(v1, v2, 100, 0, ids...)); code != 200 {
		t.Fatalf("%s: apply: %d %s", name, code, out)
	}
	var scs []*meshtest.Sidecar
	for _, id := range ids {
		scs = append(scs, meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: id, URL: watch.URL()}))
	}
	defer func() {
		// Leave the mesh as it was, so each run compiles the same mesh.
		for _, s := range scs {
			s.Stop()
			if code, out := meshtest.Do(t, "DELETE", write.URL()+"/v1/resources/Sidecar/default/"+s.ID, ""); code != 200 {
				t.Errorf("%s: delete sidecar %s: %d %s", name, s.ID, code, out)
			}
		}
	}()
	for _, s := range scs {
		waitBody(t, s, "200 a")
	}
	var total, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// The load stops whatever the outcome (a t.Fatal runs defers too),
	// before the deferred stop of this run's sidecars above: not in
	// t.Cleanup, which would run only after the test's other runs.
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer stopLoad()
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; total.Load() < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				code, _, _, err := scs[i%n].Get("orders", "/")
				if err != nil || code != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d, %v", code, err))
				}
			}
		}()
	}
	var took, api []time.Duration
	for i := 0; i < changes; i++ {
		w1 := []int{0, 100}[i%2]
		t0 := time.Now()
		if code, out := putRule(t, write.URL(), w1, 100-w1, 0); code != 200 {
			t.Fatalf("%s: change %d: %d %s", name, i, code, out)
		}
		api = append(api, time.Since(t0))
		want := strconv.FormatInt(write.Store().Revision(), 10)
		deadline := time.Now().Add(30 * time.Second)
		for !allApplied(scs, want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: change %d (version %s) not applied everywhere after 30s", name, i, want)
			}
			time.Sleep(time.Millisecond)
		}
		took = append(took, time.Since(t0))
	}
	stopLoad()
	if failed.Load() != 0 {
		t.Fatalf("%s: %d of %d requests failed; first: %v", name, failed.Load(), total.Load(), firstErr.Load())
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	sort.Slice(api, func(i, j int) bool { return api[i] < api[j] })
	return took[len(took)/2], took[len(took)*99/100], api[len(api)/2], total.Load()
}

// Replicas on etcd share what used to be each one's own: a join token
// minted through A is redeemed through B, once across both (even when two
// redemptions race on A and B); the audit log written through A is read
// through B; a module uploaded through A (larger than one etcd value, so
// chunked) is served by B and compiles there.
func TestReplicasShareTokensAuditAndModules(t *testing.T) {
	c := etcdtest.Start(t, 3)
	key := caKey(t)
	a := meshtest.StartControl(t, server.Options{DataDir: t.TempDir(), Etcd: c.Client(), CAEncryptionKey: key})
	defer a.Close()
	bDir := t.TempDir()
	b := meshtest.StartControl(t, server.Options{DataDir: bDir, Etcd: c.Client(), CAEncryptionKey: key})
	defer b.Close()
	if code, out := meshtest.Do(t, "POST", a.URL()+"/v1/apply", servicesYAML("127.0.0.1:1", "127.0.0.1:2", "j1", "j2")); code != 200 {
		t.Fatalf("apply through A: %d %s", code, out)
	}
	if err := b.Store().WaitRevision(context.Background(), a.Store().Revision()); err != nil {
		t.Fatal(err)
	}

	// Join tokens.
	sign := func(rep *server.Server, node, token string) error {
		ic := &client.IdentityClient{URL: rep.URL(), NodeID: node, Token: token,
			HTTP: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: client.TLSConfig(meshtest.Roots(t, rep), nil)}}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ic.Sign(ctx, csr)
		return err
	}
	tr, err := a.IssueToken("j1", 0, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := sign(b, "j1", tr.Token); err != nil {
		t.Fatalf("a token minted on A, redeemed on B: %v", err)
	}
	if err := sign(a, "j1", tr.Token); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("the same token replayed on A: %v", err)
	}
	if err := sign(a, "j2", tr.Token); err == nil || !strings.Contains(err.Error(), `is for node "j1"`) {
		t.Fatalf("j1's token for j2: %v", err)
	}
	tr2, err := b.IssueToken("j2", 0, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, rep := range []*server.Server{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sign(rep, "j2", tr2.Token)
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("a single-use token redeemed on A and B at once: want one success, got %v and %v", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !strings.Contains(err.Error(), "already used") {
			t.Fatalf("the losing redemption: %v", err)
		}
	}

	// Modules: 2.5 MiB, three etcd values.
	mod := make([]byte, 5<<19)
	copy(mod, "\x00asm\x01\x00\x00\x00")
	if _, err := rand.Read(mod[8:]); err != nil {
		t.Fatal(err)
	}
	code, out := meshtest.Do(t, "POST", a.URL()+"/v1/modules", string(mod))
	if code != 201 {
		t.Fatalf("upload through A: %d %s", code, out)
	}
	sum := sha256.Sum256(mod)
	sha := hex.EncodeToString(sum[:])
	if code, got := meshtest.Do(t, "GET", b.URL()+"/v1/modules/"+sha, ""); code != 200 || got != string(mod) {
		t.Fatalf("B serving the module uploaded through A: %d, %d bytes (want %d)", code, len(got), len(mod))
	}
	filter := fmt.Sprintf("kind: Filter\nname: big\nspec:\n  module: {sha256: %s}\n  apply: {all: true}\n", sha)
	if code, out := meshtest.Do(t, "POST", b.URL()+"/v1/apply", filter); code != 200 {
		t.Fatalf("a Filter naming A's module, applied through B: %d %s", code, out)
	}

	// The audit log, read through B: A's apply and upload are there.
	code, out = meshtest.Do(t, "GET", b.URL()+"/v1/audit?limit=50", "")
	if code != 200 {
		t.Fatalf("GET /v1/audit on B: %d %s", code, out)
	}
	var es []store.AuditEntry
	if err := json.Unmarshal([]byte(out), &es); err != nil {
		t.Fatal(err)
	}
	var sawApply, sawUpload bool
	for _, e := range es {
		sawApply = sawApply || e.Action == "apply" && slices.Contains(e.Resources, "Sidecar default/j1")
		sawUpload = sawUpload || e.Action == "module-upload" && slices.Contains(e.Resources, "Module "+sha)
	}
	if !sawApply || !sawUpload {
		t.Fatalf("B's audit log lacks A's apply (%v) or upload (%v):\n%s", sawApply, sawUpload, out)
	}
	if local, err := os.ReadFile(filepath.Join(bDir, "audit.log")); err != nil || strings.Contains(string(local), "Sidecar default/j1") {
		t.Fatalf("B's own audit.log holds A's apply (so the test proves nothing): %v", err)
	}
}
