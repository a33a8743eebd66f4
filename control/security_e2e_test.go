package control_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/proxy/identity"
)

// TestControlPlaneRefusesStrangers runs the TLS API and real clients
// against it: each stranger is refused with its status and reason, and
// the refusal is logged; the operator and sidecar happy paths work.
func TestControlPlaneRefusesStrangers(t *testing.T) {
	a, b := meshtest.StartUpstream(t, "a"), meshtest.StartUpstream(t, "b")
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte(
		"# operators\nvera viewer sha256:"+sha256Hex("vera-token")+"\nedith editor sha256:"+sha256Hex("edith-token")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(core, meshtest.Logger(t).Core()))
	cp := meshtest.StartControl(t, server.Options{DataDir: t.TempDir(), UsersFile: users, Logger: log})
	defer cp.Close()
	if !strings.HasPrefix(cp.URL(), "https://") {
		t.Fatalf("the API is not TLS by default: %s", cp.URL())
	}
	roots := meshtest.Roots(t, cp)
	logged := func(t *testing.T, status int, reason string) {
		t.Helper()
		meshtest.Eventually(t, "the refusal logged", func() bool {
			for _, e := range logs.FilterMessage("API request refused").All() {
				c := e.ContextMap()
				if c["status"] == int64(status) && strings.Contains(c["reason"].(string), reason) {
					return true
				}
			}
			return false
		})
	}
	refused := func(t *testing.T, code int, body string, status int, reason string) {
		t.Helper()
		var eb server.ErrorBody
		if json.Unmarshal([]byte(body), &eb) == nil && eb.Error != "" {
			body = eb.Error
		}
		if code != status || !strings.Contains(body, reason) {
			t.Fatalf("got %d %s, want %d with %q", code, body, status, reason)
		}
		logged(t, status, reason)
	}
	mesh := meshYAML(a.Addr, b.Addr, 100, 0, "s1", "s2")

	t.Run("operators", func(t *testing.T) {
		code, out := meshtest.Do(t, "GET", cp.URL()+"/v1/status", "", "Authorization", "")
		refused(t, code, out, 401, "authentication required")
		code, out = meshtest.Do(t, "GET", cp.URL()+"/v1/status", "", "Authorization", "Bearer wot_not-a-token")
		refused(t, code, out, 401, "bearer token is not recognised")
		code, out = meshtest.Do(t, "GET", cp.URL()+"/v1/status", "", "Authorization", "Basic YWRtaW46YWRtaW4=")
		refused(t, code, out, 401, "want Bearer TOKEN")
		// X-Weft-User names no one.
		code, out = meshtest.Do(t, "POST", cp.URL()+"/v1/apply", mesh, "Authorization", "", "X-Weft-User", "admin")
		refused(t, code, out, 401, "authentication required")
		// A viewer reads but may not write.
		if code, out := meshtest.Do(t, "GET", cp.URL()+"/v1/status", "", "Authorization", "Bearer vera-token"); code != 200 {
			t.Fatalf("viewer status: %d %s", code, out)
		}
		code, out = meshtest.Do(t, "POST", cp.URL()+"/v1/apply", mesh, "Authorization", "Bearer vera-token")
		refused(t, code, out, 403, "user:vera has role viewer; this call needs editor")
		if cp.Store().Revision() != 0 {
			t.Fatalf("a refused write changed the store: revision %d", cp.Store().Revision())
		}
		// An editor writes, but may not mint join tokens.
		if code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/apply", mesh, "Authorization", "Bearer edith-token"); code != 200 {
			t.Fatalf("editor apply: %d %s", code, out)
		}
		code, out = meshtest.Do(t, "POST", cp.URL()+"/v1/tokens", `{"node":"s1"}`, "Authorization", "Bearer edith-token")
		refused(t, code, out, 403, "user:edith has role editor; this call needs admin")
		// An operator is not a sidecar.
		code, out = meshtest.Do(t, "GET", cp.URL()+"/v1/watch?node=s1&wait=1ms", "")
		refused(t, code, out, 403, "user:admin is not a sidecar")
	})

	t.Run("plaintext client", func(t *testing.T) {
		resp, err := http.Get("http://" + cp.Addr().String() + "/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
			t.Fatalf("plaintext: %d %s", resp.StatusCode, body)
		}
		meshtest.Eventually(t, "the plaintext attempt logged", func() bool {
			return logs.FilterMessageSnippet("client sent an HTTP request to an HTTPS server").Len() > 0
		})
	})

	mint := func(t *testing.T, node, ttl string) server.TokenResponse {
		t.Helper()
		body := `{"node":"` + node + `"`
		if ttl != "" {
			body += `,"ttl":"` + ttl + `"`
		}
		code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/tokens", body+"}")
		var tr server.TokenResponse
		if code != 201 || json.Unmarshal([]byte(out), &tr) != nil || !strings.HasPrefix(tr.Token, "wjt_") {
			t.Fatalf("token for %s: %d %s", node, code, out)
		}
		return tr
	}
	// join sends a CSR for node with tok, as the sidecar's identity client.
	join := func(node, tok string) (*identity.Issued, error) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		ic := &client.IdentityClient{URL: cp.URL(), NodeID: node, Token: tok,
			HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: client.TLSConfig(roots, nil)}}}
		return ic.Sign(context.Background(), csr)
	}
	joinRefused := func(t *testing.T, err error, status int, reason string) {
		t.Helper()
		var se *client.StatusError
		if !client.IsStatus(err, status) || !strings.Contains(err.Error(), reason) {
			t.Fatalf("got %v (%T), want %d with %q", err, se, status, reason)
		}
		logged(t, status, reason)
	}

	t.Run("join tokens", func(t *testing.T) {
		_, err := join("s1", "")
		joinRefused(t, err, 401, "a valid join token is required")
		_, err = join("s1", "wjt_guessed")
		joinRefused(t, err, 401, "not recognised")

		s1 := mint(t, "s1", "")
		if d := time.Until(s1.ExpiresAt); d <= 59*time.Minute || d > time.Hour {
			t.Fatalf("default join token lifetime: expires in %s, want 1h", d)
		}
		raw, _ := os.ReadFile(filepath.Join(cp.CA().Dir(), "tokens.json"))
		if strings.Contains(string(raw), s1.Token) || !strings.Contains(string(raw), sha256Hex(s1.Token)) {
			t.Fatalf("tokens.json must hold the token's sha256 only:\n%s", raw)
		}
		// Node s2 presenting s1's token.
		_, err = join("s2", s1.Token)
		joinRefused(t, err, 403, `this join token is for node "s1", not "s2"`)
		if _, err := join("s1", s1.Token); err != nil {
			t.Fatalf("s1 joining with its token: %v", err)
		}
		// The same token again: a replay.
		_, err = join("s1", s1.Token)
		joinRefused(t, err, 401, `the join token for node "s1" was already used`)

		short := mint(t, "s2", "1s")
		for time.Now().Before(short.ExpiresAt) { // poll the clock past the expiry
			time.Sleep(10 * time.Millisecond)
		}
		_, err = join("s2", short.Token)
		joinRefused(t, err, 401, `the join token for node "s2" expired`)

		code, out := meshtest.Do(t, "POST", cp.URL()+"/v1/tokens", `{"node":"s2","ttl":"forever"}`)
		if code != 400 || !strings.Contains(out, "ttl:") {
			t.Fatalf("bad ttl: %d %s", code, out)
		}
	})

	t.Run("sidecars", func(t *testing.T) {
		// The happy path: join with a token, then watch over mTLS.
		id1 := meshtest.Join(t, cp, "s1")
		s1 := meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: "s1", URL: cp.URL(), Identity: id1})
		waitBody(t, s1, "200 a")
		meshtest.Eventually(t, "s1's ACK", func() bool { return nodeStatus(t, cp.URL(), "s1").InSync })
		if got := id1.SVID().Certificate.Leaf.Subject.CommonName; got != "s1" {
			t.Fatalf("s1's certificate is bound to node %q", got)
		}
		// s1's certificate against another node's snapshot and ACK, and
		// against operator calls.
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: client.TLSConfig(roots, id1)}}
		call := func(method, path, body string) (int, string) {
			req, _ := http.NewRequest(method, cp.URL()+path, strings.NewReader(body))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		code, out := call("GET", "/v1/watch?node=s2&wait=1ms", "")
		refused(t, code, out, 403, `node:s1 may only watch and acknowledge for itself, not node "s2"`)
		if strings.Contains(out, "outbound") {
			t.Fatalf("s2's snapshot leaked: %s", out)
		}
		code, out = call("POST", "/v1/ack", `{"node":"s2","version":"1","error":"forged"}`)
		refused(t, code, out, 403, `not node "s2"`)
		if n := nodeStatus(t, cp.URL(), "s2"); n.LastNack != nil {
			t.Fatalf("a forged NACK was recorded: %+v", n.LastNack)
		}
		code, out = call("GET", "/v1/resources", "")
		refused(t, code, out, 403, "node:s1 is a sidecar; this call is for operators")
		// Its own snapshot, over the same mTLS client.
		if code, out := call("GET", "/v1/watch?node=s1", ""); code != 200 || !strings.Contains(out, `"node":"s1"`) {
			t.Fatalf("s1's own watch: %d %s", code, out)
		}
		// Renewing for another node with s1's certificate.
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		_, err := (&client.IdentityClient{URL: cp.URL(), NodeID: "s2", Source: id1, HTTP: hc}).Sign(context.Background(), csr)
		joinRefused(t, err, 403, `node:s1 may only renew its own certificate, not node "s2"'s`)
		// And its own renewal needs no token.
		if _, err := (&client.IdentityClient{URL: cp.URL(), NodeID: "s1", Source: id1, HTTP: hc}).Sign(context.Background(), csr); err != nil {
			t.Fatalf("s1 renewing over mTLS: %v", err)
		}
	})
}
