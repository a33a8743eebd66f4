package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/internal/etcdtest"
)

// sharedAdminReplicas starts replicas on one real etcd and calls their API
// over TLS as an operator would.
type sharedAdminReplicas struct {
	t   *testing.T
	c   *etcdtest.Cluster
	key []byte
}

func (r *sharedAdminReplicas) start(dir, prefix string) *Server {
	r.t.Helper()
	s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", DataDir: dir, ScrapeInterval: -1, ModuleGrace: -1,
		Etcd: r.c.Client(), EtcdPrefix: prefix, CAEncryptionKey: r.key})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { s.Close() })
	return s
}

// status is the answer to GET /v1/resources (viewer and up) with token.
func (r *sharedAdminReplicas) status(s *Server, token string) int {
	r.t.Helper()
	roots, err := client.LoadCA(s.CAFile())
	if err != nil {
		r.t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: client.TLSConfig(roots, nil)}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", s.URL()+"/v1/resources", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// eventually polls cond until it holds, failing after a generous deadline.
func (r *sharedAdminReplicas) eventually(what string, cond func() bool) {
	r.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("after 30s: %s", what)
		}
	}
}

// TestAdminTokenSharedThroughEtcd: replicas on one etcd accept one admin
// token, made by the first; the others keep no copy of it, and refuse a
// token of their own made apart. Only its digest is in etcd. Replacing or
// deleting the shared digest takes effect on every replica.
func TestAdminTokenSharedThroughEtcd(t *testing.T) {
	r := &sharedAdminReplicas{t: t, c: etcdtest.Start(t, 1), key: make([]byte, 32)}
	a := r.start(t.TempDir(), "")
	tok := a.AdminToken()
	if tok == "" {
		t.Fatal("the first replica made no admin token")
	}
	if b, err := os.ReadFile(filepath.Join(a.o.DataDir, adminTokenFile)); err != nil || string(b) != tok+"\n" {
		t.Fatalf("A's admin.token: %q, %v", b, err)
	}

	bDir := t.TempDir()
	b := r.start(bDir, "")
	if b.AdminToken() != "" || b.AdminTokenFile() != "" {
		t.Fatalf("B holds an admin token of its own: %q", b.AdminToken())
	}
	if _, err := os.Stat(filepath.Join(bDir, adminTokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("B wrote an admin.token: %v", err)
	}
	for _, s := range []*Server{a, b} {
		if code := r.status(s, tok); code != 200 {
			t.Fatalf("%s with the shared admin token: %d, want 200", s.URL(), code)
		}
		if code := r.status(s, "wot_not-the-token"); code != 401 {
			t.Fatalf("%s with a wrong token: %d, want 401", s.URL(), code)
		}
		if code := r.status(s, ""); code != 401 {
			t.Fatalf("%s with no token: %d, want 401", s.URL(), code)
		}
	}

	// etcd holds the digest, not the token.
	v, _, err := a.adminKV().Get(context.Background(), sharedAdminKey)
	var sa sharedAdmin
	if err != nil || json.Unmarshal(v, &sa) != nil || sa.SHA256 != hashToken(tok) || json.Valid(v) && string(v) == tok {
		t.Fatalf("PREFIX/admin/token = %q, %v; want the digest of the token", v, err)
	}

	// A replica started with an admin.token of its own (made apart) does
	// not accept it, nor does any other.
	cDir := t.TempDir()
	own := "wot_made-apart"
	if err := os.WriteFile(filepath.Join(cDir, adminTokenFile), []byte(own+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := r.start(cDir, "")
	if c.AdminToken() != "" {
		t.Fatal("C took its own admin.token as the admin token")
	}
	if code := r.status(c, own); code != 401 {
		t.Fatalf("C with its own token: %d, want 401", code)
	}
	if code := r.status(c, tok); code != 200 {
		t.Fatalf("C with the shared token: %d, want 200", code)
	}

	// A copy of the shared token in a replica's data directory is its own.
	if err := os.WriteFile(filepath.Join(bDir, adminTokenFile), []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = r.start(bDir, "")
	if b.AdminToken() != tok || b.AdminTokenFile() != filepath.Join(bDir, adminTokenFile) {
		t.Fatalf("B with a copy: AdminToken %q", b.AdminToken())
	}

	// The digest is replaced in etcd (an operator rotating it): every
	// replica takes the new token and refuses the old one.
	next := "wot_rotated"
	nv, _ := json.Marshal(sharedAdmin{SHA256: hashToken(next), CreatedAt: time.Now().UTC()})
	if _, err := r.c.Client().Put(context.Background(), "/weft/admin/"+sharedAdminKey, string(nv)); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Server{a, b, c} {
		r.eventually(s.URL()+" to take the rotated token", func() bool { return r.status(s, next) == 200 })
		if code := r.status(s, tok); code != 401 {
			t.Fatalf("%s with the replaced token: %d, want 401", s.URL(), code)
		}
	}
	if a.AdminToken() != "" {
		t.Fatal("A still reports the replaced token as the admin token")
	}

	// Deleted: no bootstrap admin token is accepted anywhere.
	if _, err := r.c.Client().Delete(context.Background(), "/weft/admin/"+sharedAdminKey); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Server{a, b, c} {
		r.eventually(s.URL()+" to refuse the deleted token", func() bool { return r.status(s, next) == 401 })
	}
}

// TestAdminTokenFirstReplicaWins starts replicas on a fresh prefix at
// once: exactly one makes the token, and every one accepts it.
func TestAdminTokenFirstReplicaWins(t *testing.T) {
	r := &sharedAdminReplicas{t: t, c: etcdtest.Start(t, 1), key: make([]byte, 32)}
	// The CA is made once first, so the race is the admin token's alone.
	r.start(t.TempDir(), "/race/")
	if _, err := r.c.Client().Delete(context.Background(), "/race/admin/"+sharedAdminKey); err != nil {
		t.Fatal(err)
	}
	const n = 3
	servers := make([]*Server, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), ScrapeInterval: -1, ModuleGrace: -1,
				Etcd: r.c.Client(), EtcdPrefix: "/race/", CAEncryptionKey: r.key})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			servers[i] = s
		}()
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
	}
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	tok := ""
	for _, s := range servers {
		if s.AdminToken() != "" {
			if tok != "" {
				t.Fatal("two replicas each hold an admin token")
			}
			tok = s.AdminToken()
		} else if _, err := os.Stat(filepath.Join(s.o.DataDir, adminTokenFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a replica that did not make the token kept an admin.token: %v", err)
		}
	}
	if tok == "" {
		t.Fatal("no replica made the admin token")
	}
	for _, s := range servers {
		if code := r.status(s, tok); code != 200 {
			t.Fatalf("%s with the shared token: %d", s.URL(), code)
		}
	}
}
