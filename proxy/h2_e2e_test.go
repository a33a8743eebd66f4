package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/weftmesh/weft/proxy/internal/testserver"
)

const h2Config = `
listeners:
  - name: main
    address: 127.0.0.1:0
    access_log: {enabled: true, path: {{log}}, fields: [protocol, path, status]}
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`

// h2cClient speaks HTTP/2 in plaintext with prior knowledge.
func h2cClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// One port, three ways in: HTTP/1.1, h2c with prior knowledge (Go's
// HTTP/2 client and curl) and h2c by Upgrade (curl --http2); each reaches
// the HTTP/1.1 upstream, and the access log names the protocol spoken.
func TestHTTP2AndHTTP1OnOnePort(t *testing.T) {
	up := testserver.Start(t, "up")
	logPath := t.TempDir() + "/access.log"
	_, url := startProxy(t, h2Config, map[string]string{"up": up.Addr, "log": logPath})

	if st, body, _ := get(t, &fasthttp.Client{}, url+"/h1"); st != 200 || body != "up" {
		t.Fatalf("HTTP/1.1: %d %q", st, body)
	}
	resp, err := h2cClient().Get(url + "/h2c?x=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "up" {
		t.Fatalf("h2c prior knowledge: %s %d %q", resp.Proto, resp.StatusCode, body)
	}
	if got := string(up.Last().RequestURI()); got != "/h2c?x=1" {
		t.Fatalf("the upstream saw %q", got)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		for _, c := range []struct{ flag, path string }{{"--http2-prior-knowledge", "/curl-prior"}, {"--http2", "/curl-upgrade"}} {
			out, err := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", c.flag, url+c.path).CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "2 200" {
				t.Fatalf("curl %s: %q %v", c.flag, out, err)
			}
		}
	} else {
		t.Log("curl not installed (apt-get install -y curl): its checks are skipped")
	}
	eventually(t, 5*time.Second, "the access log lines", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "\n") >= 4
	})
	b, _ := os.ReadFile(logPath)
	for _, want := range []string{`"path":"/h1","protocol":"HTTP/1.1"`, `"path":"/h2c","protocol":"HTTP/2.0"`, `"path":"/curl-upgrade","protocol":"HTTP/2.0"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("access log lacks %s:\n%s", want, b)
		}
	}
}

// The sidecar-to-sidecar hop negotiates h2 by ALPN over mTLS: a gRPC
// client reaches a gRPC server through two sidecars, and the inbound
// sidecar saw HTTP/2 on its TLS listener.
func TestMTLSHopNegotiatesHTTP2ForGRPC(t *testing.T) {
	grpcAddr, _ := startGRPCServer(t)
	c := newCA(t, time.Hour)
	serverSrc := rotatingIdentity(t, c, ordersID, nil)
	clientSrc := rotatingIdentity(t, c, webID, nil)
	logPath := t.TempDir() + "/inbound.log"
	server := startProxyWith(t, serverSrc, `
listeners:
- name: inbound
  address: 127.0.0.1:0
  direction: inbound
  tls: {mode: strict}
  access_log: {enabled: true, path: {{log}}, fields: [protocol, path, peer_principal]}
  virtual_hosts:
  - name: app
    domains: ["*"]
    routes: [{match: {prefix: /}, route: {cluster: app}}]
clusters:
- name: app
  protocol: http2
  endpoints: [{address: "{{app}}"}]
`, map[string]string{"app": grpcAddr, "log": logPath})
	client := startProxyWith(t, clientSrc, `
listeners:
- name: outbound
  address: 127.0.0.1:0
  virtual_hosts:
  - name: orders
    domains: ["*"]
    routes: [{match: {prefix: /}, route: {cluster: orders, timeout: 5s}}]
clusters:
- name: orders
  protocol: auto
  endpoints: [{address: "{{orders}}"}]
  tls: {server_ids: ["{{server_id}}"]}
`, map[string]string{"orders": server.ListenerAddr("inbound").String(), "server_id": ordersID})
	cc := dialGRPC(t, "http://"+client.ListenerAddr("outbound").String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health check through two sidecars: %v %v", resp, err)
		}
	}
	eventually(t, 5*time.Second, "the inbound access log", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Count(string(b), "\n") >= 3
	})
	b, _ := os.ReadFile(logPath)
	want := `"path":"/grpc.health.v1.Health/Check","protocol":"HTTP/2.0","peer_principal":"` + webID + `"`
	if !strings.Contains(string(b), want) {
		t.Fatalf("the inbound sidecar did not log an HTTP/2 mTLS call (%s):\n%s", want, b)
	}
}

// A filter that buffers (Pause until end_of_stream) sees an HTTP/2
// request body sent in three chunks as one, and what it writes is what
// the upstream gets; the same for the response on its way back.
func TestWasmBuffersAStreamedBody(t *testing.T) {
	up := testserver.Start(t, "up")
	module := guestFile(t, t.TempDir(), "body")
	_, url := startProxy(t, `
filters:
  - name: body
    module: {path: {{module}}}
listeners:
  - name: main
    address: 127.0.0.1:0
    filters: [body]
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: "{{up}}"}]
`, map[string]string{"up": up.Addr, "module": module})
	pr, pw := io.Pipe()
	go func() {
		for _, part := range []string{"first ", "second ", "third"} {
			if _, err := pw.Write([]byte(part)); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond) // separate DATA frames
		}
		_ = pw.Close()
	}()
	req, err := http.NewRequest("POST", url+"/upload", pr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "<<up>>" {
		t.Fatalf("response: %s %d %q", resp.Proto, resp.StatusCode, body)
	}
	if got := string(up.Last().Body()); got != "FIRST SECOND THIRD (rewritten by wasm)" {
		t.Fatalf("the upstream got %q", got)
	}
}
