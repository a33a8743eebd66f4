package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/internal/etcdtest"
	"github.com/weftmesh/weft/control/registry"
)

// TestModuleGarbageCollection uploads three modules, has a Filter name one
// (so the sidecar's snapshot names it too), and collects with no grace
// period (the registry's own test covers the grace period): only modules
// nothing names go, and a module goes once its Filter moves to another.
func TestModuleGarbageCollection(t *testing.T) {
	s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), ScrapeInterval: -1, Insecure: true, ModuleGrace: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	upload := func(tag string) string {
		t.Helper()
		code, b := call("POST", "/v1/modules", "\x00asm\x01\x00\x00\x00"+tag)
		var m registry.Module
		if code != 201 || json.Unmarshal([]byte(b), &m) != nil {
			t.Fatalf("upload: %d %s", code, b)
		}
		return m.SHA256
	}
	m1, m2, m3 := upload("one"), upload("two"), upload("three")
	meshWith := func(sha string) string {
		return "kind: Service\nname: orders\nspec: {endpoints: [{address: \"127.0.0.1:9\"}]}\n---\n" +
			"kind: Sidecar\nname: s1\nspec: {outbound: \"127.0.0.1:0\", admin: \"off\"}\n---\n" +
			"kind: Filter\nname: tag\nspec:\n  module: {sha256: " + sha + "}\n  apply: {all: true}\n"
	}
	if code, b := call("POST", "/v1/apply", meshWith(m1)); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	gone, err := s.collect(0)
	if err != nil || len(gone) != 2 || !has(gone, m2) || !has(gone, m3) {
		t.Fatalf("collected %v, %v; want %s and %s", gone, err, m2, m3)
	}
	for _, m := range s.Registry().List() {
		if m.SHA256 == m1 && m.Refs != 2 {
			t.Fatalf("%s: %d refs, want 2 (the Filter and s1's snapshot)", m1, m.Refs)
		}
	}
	if code, _ := call("GET", "/v1/modules/"+m2, ""); code != 404 {
		t.Fatalf("a collected module is still served: %d", code)
	}
	if code, _ := call("GET", "/v1/modules/"+m1, ""); code != 200 {
		t.Fatalf("a module in use is not served: %d", code)
	}

	// The Filter moves to a new module: the old one goes, the new stays.
	m4 := upload("four")
	if code, b := call("POST", "/v1/apply", meshWith(m4)); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	if gone, err := s.collect(0); err != nil || len(gone) != 1 || gone[0].SHA256 != m1 {
		t.Fatalf("collected %v, %v; want only %s", gone, err, m1)
	}
	if code, b := call("GET", "/v1/modules", ""); code != 200 || strings.Contains(b, m1) || !strings.Contains(b, `"refs": 2`) {
		t.Fatalf("list: %d %s", code, b)
	}
}

func has(ms []registry.Module, sha string) bool {
	for _, m := range ms {
		if m.SHA256 == sha {
			return true
		}
	}
	return false
}

// TestModuleCollectionOnEtcd: replicas A and B share one etcd. A replica
// that does not lead the collection removes only its own copies, so a
// module it no longer sees named stays in the shared store for the
// others; the leader counts references on the latest committed revision
// (a Filter applied through A an instant earlier keeps its module) and
// collects shared blobs it never held a copy of.
func TestModuleCollectionOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	key := make([]byte, 32)
	start := func() *Server {
		s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), ScrapeInterval: -1, Insecure: true,
			ModuleGrace: -1, Etcd: c.Client(), CAEncryptionKey: key})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := start(), start()
	call := func(s *Server, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	upload := func(tag string) string {
		t.Helper()
		code, out := call(a, "POST", "/v1/modules", "\x00asm\x01\x00\x00\x00"+tag)
		var m registry.Module
		if code != 201 || json.Unmarshal([]byte(out), &m) != nil {
			t.Fatalf("upload: %d %s", code, out)
		}
		return m.SHA256
	}
	inShared := func(sha string) bool {
		t.Helper()
		ds, err := a.gc.blobs.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(ds, sha)
	}
	meshWith := func(sha string) string {
		return "kind: Service\nname: orders\nspec: {endpoints: [{address: \"127.0.0.1:9\"}]}\n---\n" +
			"kind: Sidecar\nname: s1\nspec: {outbound: \"127.0.0.1:0\", admin: \"off\"}\n---\n" +
			"kind: Filter\nname: tag\nspec:\n  module: {sha256: " + sha + "}\n  apply: {all: true}\n"
	}

	// A, not the leader, collects an unnamed module: its copy only.
	m1 := upload("one")
	if gone, err := a.collect(0); err != nil || !has(gone, m1) {
		t.Fatalf("A collected %v, %v; want its copy of %s", gone, err, m1)
	}
	if !inShared(m1) {
		t.Fatal("a replica that does not lead the collection removed a module from the shared store")
	}
	if code, _ := call(b, "GET", "/v1/modules/"+m1, ""); code != 200 {
		t.Fatalf("B serving %s after A dropped its copy: %d", m1, code)
	}

	// B leads. A Filter naming m2 is applied through A and B collects at
	// once: it counts on the revision A committed, so m2 stays.
	b.gc.leader.Store(true)
	m2 := upload("two")
	if code, out := call(a, "POST", "/v1/apply", meshWith(m2)); code != 200 {
		t.Fatalf("apply through A: %d %s", code, out)
	}
	gone, err := b.collect(0)
	if err != nil || has(gone, m2) || !inShared(m2) {
		t.Fatalf("the leader collected %v, %v: it must keep %s, which the latest revision names (in the shared store: %v)", gone, err, m2, inShared(m2))
	}
	if !has(gone, m1) || inShared(m1) {
		t.Fatalf("the leader collected %v: want %s, unnamed, out of the shared store too", gone, m1)
	}

	// m3 was only ever uploaded through A: the leader holds no copy, and
	// collects it from the shared store all the same.
	m3 := upload("three")
	if gone, err := b.collect(0); err != nil || !has(gone, m3) || inShared(m3) || !inShared(m2) {
		t.Fatalf("the leader collected %v, %v; want %s (never held by it) out of the shared store and %s kept", gone, err, m3, m2)
	}

	// The Filter goes: m2 goes from the shared store.
	if code, out := call(a, "DELETE", "/v1/resources/Filter/default/tag", ""); code/100 != 2 {
		t.Fatalf("delete the Filter through A: %d %s", code, out)
	}
	if gone, err := b.collect(0); err != nil || !has(gone, m2) || inShared(m2) {
		t.Fatalf("the leader collected %v, %v; want %s, no longer named", gone, err, m2)
	}
}

// TestModuleCollectionRaceOnEtcd is the race the leader's count cannot see:
// a change naming a module is validated on replica C (which holds the
// module) while the collecting replica removes the module's blob from the
// shared store, counting on the revision before. Replica A, which never
// held the module, must compile C's commit all the same, at once — not at
// C's next periodic check a minute later: C puts the blob back as soon as
// it sees it removed, and A compiles again as soon as the blob is back.
func TestModuleCollectionRaceOnEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	key := make([]byte, 32)
	start := func() *Server {
		s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), ScrapeInterval: -1, Insecure: true,
			ModuleGrace: -1, Etcd: c.Client(), CAEncryptionKey: key})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, cr := start(), start()
	call := func(s *Server, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	inShared := func(sha string) bool {
		t.Helper()
		ds, err := a.gc.blobs.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(ds, sha)
	}
	// Deadlines are generous for a loaded machine, and still well under
	// the minute the periodic check would take.
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after 30s: %s", what)
			}
		}
	}
	base := "kind: Service\nname: orders\nspec: {endpoints: [{address: \"127.0.0.1:9\"}]}\n---\n" +
		"kind: Sidecar\nname: s1\nspec: {outbound: \"127.0.0.1:0\", admin: \"off\"}\n"
	if code, out := call(cr, "POST", "/v1/apply", base); code != 200 {
		t.Fatalf("apply: %d %s", code, out)
	}
	code, out := call(cr, "POST", "/v1/modules", "\x00asm\x01\x00\x00\x00race")
	var m registry.Module
	if code != 201 || json.Unmarshal([]byte(out), &m) != nil {
		t.Fatalf("upload through C: %d %s", code, out)
	}

	// The collecting replica removes the blob (its count did not see the
	// change below), and the change naming it commits through C.
	if err := cr.gc.blobs.Delete(context.Background(), m.SHA256); err != nil {
		t.Fatal(err)
	}
	filter := base + "---\nkind: Filter\nname: race\nspec:\n  module: {sha256: " + m.SHA256 + "}\n  apply: {all: true}\n"
	if code, out := call(cr, "POST", "/v1/apply", filter); code != 200 {
		t.Fatalf("apply the Filter through C: %d %s", code, out)
	}
	rev := cr.Store().Revision()
	eventually(fmt.Sprintf("replica A to install revision %d, which names a module whose blob was collected (A: revision %d, %+v)", rev, a.Store().Revision(), a.Store().Status()),
		func() bool { return a.Store().Revision() >= rev })
	if st := a.Store().Status(); st.StuckAt != 0 {
		t.Fatalf("replica A: %+v", st)
	}
	eventually("the blob back in the shared store", func() bool { return inShared(m.SHA256) })

	// Collected again while named (the collector a revision behind): C
	// puts it back at once.
	if err := a.gc.blobs.Delete(context.Background(), m.SHA256); err != nil {
		t.Fatal(err)
	}
	eventually("C to put back a blob the mesh names", func() bool { return inShared(m.SHA256) })
}
