package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
)

const securedMesh = `
kind: Service
name: orders
namespace: shop
spec: {endpoints: [{address: "10.0.0.2:15006"}]}
---
kind: Service
name: web
namespace: shop
spec: {endpoints: [{address: "10.0.0.3:15006"}]}
---
kind: Policy
name: orders
namespace: shop
spec: {services: [orders], mtls: strict, allow: [{from: [web]}]}
---
kind: Sidecar
name: orders-1
namespace: shop
spec: {service: orders, outbound: "127.0.0.1:0", inbound: "10.0.0.2:15006", app: "127.0.0.1:8080", admin: "off"}
---
kind: Sidecar
name: web-1
namespace: shop
spec: {service: web, service_account: web-sa, outbound: "127.0.0.1:0", inbound: "10.0.0.3:15006", app: "127.0.0.1:8081", admin: "off"}
`

func csrPEM(t *testing.T, uris ...string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		p, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestCertificateAuthorityAPI(t *testing.T) {
	s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", DataDir: t.TempDir(), ScrapeInterval: -1,
		CA: &ca.Options{TrustDomain: "weft.test", TTL: time.Hour, Propagation: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	roots, err := client.LoadCA(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: client.TLSConfig(roots, nil)}}
	do := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	adm := s.AdminToken()
	if code, b := do("POST", "/v1/apply", adm, securedMesh); code != 200 {
		t.Fatalf("apply: %d %s", code, b)
	}
	token := func(node string) string {
		code, b := do("POST", "/v1/tokens", adm, `{"node":"`+node+`","uses":5}`)
		var tr TokenResponse
		if code != 201 || json.Unmarshal([]byte(b), &tr) != nil || tr.Token == "" {
			t.Fatalf("token: %d %s", code, b)
		}
		return tr.Token
	}
	orders, web := token("orders-1"), token("web-1")
	sign := func(node, tok, csr string) (int, string) {
		b, _ := json.Marshal(CertificateRequest{Node: node, CSR: csr})
		return do("POST", "/v1/certificate", tok, string(b))
	}
	// The node's own identity, derived from its Sidecar resource.
	code, b := sign("orders-1", orders, csrPEM(t))
	var cr CertificateResponse
	if code != 200 || json.Unmarshal([]byte(b), &cr) != nil || cr.SpiffeID != "spiffe://weft.test/ns/shop/sa/orders" {
		t.Fatalf("sign: %d %s", code, b)
	}
	if code, b := sign("web-1", web, csrPEM(t, "spiffe://weft.test/ns/shop/sa/web-sa")); code != 200 || !strings.Contains(b, "sa/web-sa") {
		t.Fatalf("service_account: %d %s", code, b)
	}
	// A CSR for a foreign identity: 403, even with a valid token.
	if code, b := sign("web-1", web, csrPEM(t, "spiffe://weft.test/ns/shop/sa/orders")); code != 403 {
		t.Fatalf("foreign CSR: %d %s", code, b)
	}
	// A stranger: no token, a wrong token (401), another node's token (403).
	for _, tok := range []string{"", "wjt_nope"} {
		if code, _ := sign("orders-1", tok, csrPEM(t)); code != 401 {
			t.Fatalf("token %q for orders-1: %d, want 401", tok, code)
		}
	}
	if code, b := sign("orders-1", web, csrPEM(t)); code != 403 || !strings.Contains(b, `for node \"web-1\"`) {
		t.Fatalf("web-1's token for orders-1: %d %s, want 403", code, b)
	}
	// A node with a token but no Sidecar resource.
	ghost := token("ghost")
	if code, _ := sign("ghost", ghost, csrPEM(t)); code != 403 {
		t.Fatalf("undeclared node: %d, want 403", code)
	}

	// The client side: a rotating identity through the HTTP API.
	src := identity.NewSource()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ic := &client.IdentityClient{URL: s.URL(), NodeID: "web-1", Token: web, Source: src,
			HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: client.TLSConfig(roots, src)}}}
		_ = src.Rotate(ctx, identity.RotateOptions{Signer: ic, BundleInterval: 20 * time.Millisecond})
	}()
	defer func() { cancel(); <-done }()
	<-src.Ready()
	if src.SVID().ID != "spiffe://weft.test/ns/shop/sa/web-sa" {
		t.Fatalf("client identity %s", src.SVID().ID)
	}
	first := src.SVID().Certificate.Leaf.Issuer.String()
	if code, b := do("POST", "/v1/ca/rotate", adm, ""); code != 200 || strings.Count(b, "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("rotate: %d %s", code, b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for src.SVID().Certificate.Leaf.Issuer.String() == first || len(src.Bundle().Roots) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the sidecar did not renew on the new root with both roots trusted")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The compiled configs carry mTLS and the Policy.
	snap := s.Store().Node("orders-1")
	cfg, err := config.Parse("orders-1", snap.Body)
	if err != nil {
		t.Fatal(err)
	}
	var in *config.Listener
	for i := range cfg.Listeners {
		if cfg.Listeners[i].Name == "inbound" {
			in = &cfg.Listeners[i]
		}
	}
	if in == nil || in.TLS == nil || in.TLS.Mode != "strict" || in.Authz == nil || in.Authz.Default != "deny" ||
		len(in.Authz.Rules) != 1 || in.Authz.Rules[0].Principals[0] != "spiffe://weft.test/ns/shop/sa/web-sa" {
		t.Fatalf("inbound security not compiled: %+v", in)
	}
	for _, c := range cfg.Clusters {
		if c.Name == "web.shop" && (c.TLS == nil || c.TLS.ServerIDs[0] != "spiffe://weft.test/ns/shop/sa/web-sa") {
			t.Fatalf("cluster web.shop tls: %+v", c.TLS)
		}
	}
}
