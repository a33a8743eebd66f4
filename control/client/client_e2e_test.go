package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/identity"
)

// meshFor declares a service and sidecar s1 whose outbound listener is at
// outbound.
func meshFor(outbound string) string {
	return `kind: Service
name: orders
spec:
  endpoints: [{address: "127.0.0.1:9"}]
---
kind: Sidecar
name: s1
spec:
  outbound: "` + outbound + `"
`
}

func startControl(t *testing.T, o server.Options) *server.Server {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	cp := meshtest.StartControl(t, o)
	t.Cleanup(func() { _ = cp.Close() })
	return cp
}

func apply(t *testing.T, cp *server.Server, mesh string) {
	t.Helper()
	if code, b := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", mesh); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
}

func nodeStatus(t *testing.T, cp *server.Server, node string) server.NodeStatus {
	t.Helper()
	code, b := meshtest.Do(t, "GET", cp.URL()+"/v1/status", "")
	if code != 200 {
		t.Fatalf("status: %d %s", code, b)
	}
	var st server.Status
	if err := json.Unmarshal([]byte(b), &st); err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if n.Node == node {
			return n
		}
	}
	return server.NodeStatus{}
}

// mintToken mints a single-use join token for node as the control plane's
// admin, over the API (what weft ctl token NODE does).
func mintToken(t *testing.T, cp *server.Server, node string) string {
	t.Helper()
	code, b := meshtest.Do(t, "POST", cp.URL()+"/v1/tokens", `{"node":"`+node+`"}`)
	var tr server.TokenResponse
	if code != 201 || json.Unmarshal([]byte(b), &tr) != nil || tr.Token == "" {
		t.Fatalf("join token for %s: %d %s", node, code, b)
	}
	return tr.Token
}

// member is how a sidecar reaches the control plane, as weft proxy does:
// it trusts the CA bundle (DATA/ca.pem), spends a join token for its node
// on its first certificate and presents that certificate (mTLS) on its
// watch and ACKs; the identity is kept until the test ends.
type member struct {
	tls *tls.Config
	id  *identity.Source
}

// joinWith starts node's identity with the join token tok against the
// control plane at url (up or down), trusting the CA bundle in caFile.
func joinWith(t *testing.T, url, caFile, node, tok string) member {
	t.Helper()
	roots, err := client.LoadCA(caFile)
	if err != nil {
		t.Fatal(err)
	}
	id := meshtest.JoinWith(t, url, roots, node, tok)
	return member{tls: client.TLSConfig(roots, id), id: id}
}

// join mints a join token for node and joins with it.
func join(t *testing.T, cp *server.Server, node string) member {
	t.Helper()
	return joinWith(t, cp.URL(), cp.CAFile(), node, mintToken(t, cp, node))
}

// sidecar is a real proxy driven by client.Run until stop (or the test's end).
type sidecar struct {
	p    *proxy.Proxy
	stop func()
}

func startSidecar(t *testing.T, m member, o client.Options) *sidecar {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := proxy.New(ctx, proxy.Options{Logger: zap.NewNop(), DrainTimeout: time.Second, Identity: m.id})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	o.Applier, o.TLS = p, m.tls
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	o.Wait, o.MinBackoff, o.MaxBackoff = 2*time.Second, 10*time.Millisecond, 50*time.Millisecond
	done := make(chan error, 1)
	go func() { done <- client.Run(ctx, o) }()
	stopped := false
	sc := &sidecar{p: p}
	sc.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = p.Shutdown(sctx)
	}
	t.Cleanup(sc.stop)
	return sc
}

func TestRunRefusesBadOptions(t *testing.T) {
	p, err := proxy.New(context.Background(), proxy.Options{Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	for _, tc := range []struct {
		name string
		o    client.Options
	}{
		{"no url", client.Options{NodeID: "s1", Applier: p}},
		{"no node", client.Options{URL: "http://127.0.0.1:1", Applier: p}},
		{"no applier", client.Options{URL: "http://127.0.0.1:1", NodeID: "s1"}},
		{"bad url", client.Options{URL: "http://[::1", NodeID: "s1", Applier: p}},
	} {
		if err := client.Run(context.Background(), tc.o); err == nil {
			t.Errorf("%s: Run started", tc.name)
		}
	}
}

func TestRunAppliesAcksAndCaches(t *testing.T) {
	cp := startControl(t, server.Options{})
	apply(t, cp, meshFor("127.0.0.1:0"))
	cache := t.TempDir()
	sc := startSidecar(t, join(t, cp, "s1"), client.Options{URL: cp.URL(), NodeID: "s1", CacheDir: cache, AdminAddr: "127.0.0.1:9901"})

	var st server.NodeStatus
	meshtest.Eventually(t, "s1 to ACK its config", func() bool {
		st = nodeStatus(t, cp, "s1")
		return st.InSync && st.Applied != ""
	})
	if st.LastNack != nil || st.Admin != "127.0.0.1:9901" {
		t.Fatalf("status %+v: want no NACK and the reported admin address", st)
	}
	if !sc.p.Ready() || sc.p.ListenerAddr("outbound") == nil {
		t.Fatalf("the proxy has no outbound listener after the ACK")
	}
	b, err := os.ReadFile(filepath.Join(cache, "s1.snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	var snap client.Snapshot
	if err := json.Unmarshal(b, &snap); err != nil || snap.Node != "s1" || snap.Version != st.Applied || !strings.Contains(snap.Config, "outbound") {
		t.Fatalf("cache %s: %+v, %v; want s1's applied version %s", b, snap, err, st.Applied)
	}

	// A change reaches the sidecar through the open watch.
	apply(t, cp, meshFor("127.0.0.1:0")+"---\nkind: Service\nname: cart\nspec:\n  endpoints: [{address: \"127.0.0.1:9\"}]\n")
	meshtest.Eventually(t, "the new version to be ACKed", func() bool {
		n := nodeStatus(t, cp, "s1")
		return n.InSync && n.Applied != st.Applied
	})
}

func TestRunNacksASnapshotTheProxyRefuses(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cp := startControl(t, server.Options{})
	apply(t, cp, meshFor(busy.Addr().String())) // valid, but the sidecar cannot bind it
	cache := t.TempDir()
	sc := startSidecar(t, join(t, cp, "s1"), client.Options{URL: cp.URL(), NodeID: "s1", CacheDir: cache})

	var st server.NodeStatus
	meshtest.Eventually(t, "s1 to NACK", func() bool {
		st = nodeStatus(t, cp, "s1")
		return st.LastNack != nil
	})
	if st.Applied != "" || st.InSync || sc.p.Ready() {
		t.Fatalf("status %+v, proxy ready %v: a refused snapshot must not count as applied", st, sc.p.Ready())
	}
	if _, err := os.Stat(filepath.Join(cache, "s1.snapshot.json")); !os.IsNotExist(err) {
		t.Fatalf("a refused snapshot was cached (%v)", err)
	}
}

func TestRunBootsFromTheCacheWhenTheControlPlaneIsDown(t *testing.T) {
	cp := startControl(t, server.Options{})
	apply(t, cp, meshFor("127.0.0.1:0"))
	cache := t.TempDir()
	tok := mintToken(t, cp, "s1")
	first := startSidecar(t, joinWith(t, cp.URL(), cp.CAFile(), "s1", tok), client.Options{URL: cp.URL(), NodeID: "s1", CacheDir: cache})
	meshtest.Eventually(t, "s1 to ACK", func() bool { return nodeStatus(t, cp, "s1").InSync })
	first.stop()

	// The control plane goes down and the sidecar restarts: it has no
	// certificate (its identity lives in memory) and its join token is
	// spent, yet it serves the snapshot it cached.
	down, caFile := cp.URL(), cp.CAFile()
	if err := cp.Close(); err != nil {
		t.Fatal(err)
	}
	again := startSidecar(t, joinWith(t, down, caFile, "s1", tok), client.Options{URL: down, NodeID: "s1", CacheDir: cache})
	meshtest.Eventually(t, "the cached config to be applied", again.p.Ready)
	if again.p.ListenerAddr("outbound") == nil {
		t.Fatal("booted from the cache without the outbound listener")
	}

	// Another node's cache, or a broken one, is not applied.
	for _, tc := range []struct{ name, content string }{
		{"other node", `{"node":"s2","version":"v1","config":""}`},
		{"not json", `{`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "s1.snapshot.json"), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.WarnLevel)
			sc := startSidecar(t, joinWith(t, down, caFile, "s1", tok), client.Options{URL: down, NodeID: "s1", CacheDir: dir, Logger: zap.New(core)})
			meshtest.Eventually(t, "the cache to be judged", func() bool {
				return logs.FilterMessage("ignoring a bad snapshot cache").Len() > 0
			})
			if sc.p.Ready() {
				t.Fatal("applied a bad cache")
			}
		})
	}
}

func TestIdentityClientAgainstTheControlPlane(t *testing.T) {
	cp := startControl(t, server.Options{CA: &ca.Options{TrustDomain: "weft.test", TTL: time.Hour}})
	apply(t, cp, `kind: Service
name: orders
namespace: shop
spec: {endpoints: [{address: "10.0.0.2:15006"}]}
---
kind: Sidecar
name: orders-1
namespace: shop
spec: {service: orders, outbound: "127.0.0.1:0", admin: "off"}
---
kind: Sidecar
name: orders-2
namespace: shop
spec: {service: orders, outbound: "127.0.0.1:0", admin: "off"}
`)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A joining sidecar trusts the mesh CA bundle and has no certificate
	// yet: its join token proves its node.
	roots, err := client.LoadCA(cp.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: client.TLSConfig(roots, nil)}}
	tok := mintToken(t, cp, "orders-1")

	ic := &client.IdentityClient{URL: cp.URL() + "/", NodeID: "orders-1", Token: tok, HTTP: hc}
	is, err := ic.Sign(ctx, csr)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(is.Chain[0])
	if err != nil || len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://weft.test/ns/shop/sa/orders" {
		t.Fatalf("leaf %v, %v", leaf, err)
	}
	if is.Bundle.TrustDomain != "weft.test" || len(is.Bundle.Roots) != 1 || is.Signer == "" {
		t.Fatalf("bundle %+v signer %q", is.Bundle, is.Signer)
	}
	if err := leaf.CheckSignatureFrom(is.Bundle.Roots[0]); err != nil {
		t.Fatalf("not signed by the bundle's root: %v", err)
	}
	b2, signer, err := ic.FetchBundle(ctx)
	if err != nil || b2.Version != is.Bundle.Version || signer != is.Signer {
		t.Fatalf("FetchBundle: %+v %q %v; want the bundle Sign returned", b2, signer, err)
	}

	// Refusals are StatusErrors with the server's status and reason.
	refused := func(name string, ic *client.IdentityClient, status int, reason string) {
		t.Helper()
		_, err := ic.Sign(ctx, csr)
		if !client.IsStatus(err, status) || !strings.Contains(err.Error(), "certificate for node") || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: %v, want status %d with %q", name, err, status, reason)
		}
	}
	refused("wrong token", &client.IdentityClient{URL: cp.URL(), NodeID: "orders-1", Token: "wjt_nope", HTTP: hc}, 401, "not recognised")
	refused("spent token", &client.IdentityClient{URL: cp.URL(), NodeID: "orders-1", Token: tok, HTTP: hc}, 401, `the join token for node "orders-1" was already used`)
	// A new token replaces orders-1's spent one; unspent, only its node
	// binding refuses it to orders-2.
	unspent := mintToken(t, cp, "orders-1")
	refused("other node's token", &client.IdentityClient{URL: cp.URL(), NodeID: "orders-2", Token: unspent, HTTP: hc}, 403, `this join token is for node "orders-1", not "orders-2"`)
	// A client that does not trust the mesh CA does not talk to it.
	if _, err := (&client.IdentityClient{URL: cp.URL(), NodeID: "orders-1", Token: unspent}).Sign(ctx, csr); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("without the CA bundle: %v, want an unknown authority", err)
	}
	if _, err := (&client.IdentityClient{URL: "https://" + meshtest.FreeAddr(t), NodeID: "orders-1", HTTP: hc}).Sign(ctx, csr); err == nil || client.IsStatus(err, 401) {
		t.Errorf("unreachable control plane: %v", err)
	}
}
