//go:build linux

package netns

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/client"
)

// host is one network namespace with its address.
type host struct {
	ns   string
	addr string
}

type lab struct {
	t      *testing.T
	bin    string
	dir    string
	prefix string
	hub    string
	hosts  map[string]host
	mu     sync.Mutex
	procs  []*exec.Cmd
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newLab creates the hub namespace with a bridge and one namespace per
// host name, each with a veth into the bridge and 10.77.X.N/24.
func newLab(t *testing.T, names ...string) *lab {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command")
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(200))
	subnet := 20 + int(n.Int64())
	id := fmt.Sprintf("w%d", os.Getpid()%100000)
	l := &lab{t: t, dir: t.TempDir(), prefix: id, hub: id + "-hub", hosts: map[string]host{}}
	t.Cleanup(l.cleanup)
	run(t, "ip", "netns", "add", l.hub)
	run(t, "ip", "-n", l.hub, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.hub, "link", "set", "br0", "up")
	for i, name := range names {
		ns := id + "-" + name
		addr := fmt.Sprintf("10.77.%d.%d", subnet, i+1)
		run(t, "ip", "netns", "add", ns)
		in, out := fmt.Sprintf("%s%da", id, i), fmt.Sprintf("%s%db", id, i)
		run(t, "ip", "link", "add", in, "netns", ns, "type", "veth", "peer", "name", out, "netns", l.hub)
		run(t, "ip", "-n", l.hub, "link", "set", out, "master", "br0", "up")
		run(t, "ip", "-n", ns, "addr", "add", addr+"/24", "dev", in)
		run(t, "ip", "-n", ns, "link", "set", in, "up")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		l.hosts[name] = host{ns: ns, addr: addr}
	}
	return l
}

func (l *lab) cleanup() {
	l.mu.Lock()
	for _, p := range l.procs {
		if p.Process != nil {
			_ = p.Process.Signal(os.Interrupt)
		}
	}
	for _, p := range l.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	l.mu.Unlock()
	for _, h := range l.hosts {
		_ = exec.Command("ip", "netns", "del", h.ns).Run()
	}
	_ = exec.Command("ip", "netns", "del", l.hub).Run()
}

// start runs the weft binary in a host's namespace.
func (l *lab) start(hostName, logName string, args ...string) {
	l.t.Helper()
	f, err := os.Create(filepath.Join(l.dir, logName+".log"))
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.hosts[hostName].ns, l.bin}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
}

func (l *lab) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(l.dir, "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", filepath.Base(f), data)
	}
	return b.String()
}

// dialIn opens a TCP connection from inside a host's namespace: the socket
// is created on a thread switched into the namespace, then the thread
// switches back.
func (l *lab) dialIn(hostName string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	target := "/var/run/netns/" + l.hosts[hostName].ns
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer orig.Close()
		nsf, err := os.Open(target)
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer nsf.Close()
		if err := unix.Setns(int(nsf.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		d := net.Dialer{Timeout: 3 * time.Second}
		conn, derr := d.DialContext(ctx, network, addr)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// This thread stays in the namespace: never unlock it, so
			// the runtime retires it.
			if conn != nil {
				conn.Close()
			}
			return nil, err
		}
		runtime.UnlockOSThread()
		return conn, derr
	}
}

func (l *lab) client(hostName string, keepAlive bool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: l.dialIn(hostName), DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 8}}
}

func buildWeft(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weft")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/weftmesh/weft/cmd/weft")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building weft: %v\n%s", err, out)
	}
	return bin
}

const meshYAML = `
kind: Service
name: orders
namespace: shop
spec: {endpoints: [{address: "{{orders}}:15006"}]}
---
kind: Service
name: web
namespace: shop
spec: {endpoints: [{address: "{{web}}:15006"}]}
---
kind: Service
name: intruder
namespace: evil
spec: {endpoints: [{address: "{{evil}}:15006"}]}
---
kind: Policy
name: orders
namespace: shop
spec: {services: [orders], mtls: strict, allow: [{from: [web]}]}
---
kind: Sidecar
name: orders-1
namespace: shop
spec: {service: orders, outbound: "127.0.0.1:15001", inbound: "{{orders}}:15006", app: "127.0.0.1:8080", admin: "off"}
---
kind: Sidecar
name: web-1
namespace: shop
spec: {service: web, outbound: "{{web}}:15001", admin: "off"}
---
kind: Sidecar
name: evil-1
namespace: evil
spec: {service: intruder, outbound: "{{evil}}:15001", admin: "off"}
`

const appYAML = `
admin: {address: "off"}
listeners:
- name: app
  address: 127.0.0.1:8080
  virtual_hosts:
  - name: app
    domains: ["*"]
    routes: [{match: {prefix: /}, direct_response: {status: 200, body: "orders app"}}]
`

func expand(s string, l *lab) string {
	for name, h := range l.hosts {
		s = strings.ReplaceAll(s, "{{"+name+"}}", h.addr)
	}
	return s
}

// TestMeshMTLSAcrossHosts runs a control plane with a CA, the orders
// service (app + sidecar, strict mTLS, only web allowed), a web sidecar and
// an intruder's sidecar, each host in its own namespace.
func TestMeshMTLSAcrossHosts(t *testing.T) {
	l := newLab(t, "ctl", "orders", "web", "evil")
	l.bin = buildWeft(t)
	ctlURL := "https://" + l.hosts["ctl"].addr + ":7070"
	data, meshDir := filepath.Join(l.dir, "data"), filepath.Join(l.dir, "mesh")
	_ = os.MkdirAll(meshDir, 0o755)
	if err := os.WriteFile(filepath.Join(meshDir, "mesh.yaml"), []byte(expand(meshYAML, l)), 0o644); err != nil {
		t.Fatal(err)
	}
	l.start("ctl", "control", "control", "-data", data, "-dir", meshDir, "-addr", l.hosts["ctl"].addr+":7070",
		"-trust-domain", "weft.test", "-cert-ttl", "4s", "-ca-propagation", "1s", "-scrape", "0", "-log-level", "warn")
	// As an operator on the control plane's host: trust DATA/ca.pem, act
	// as the bootstrap admin (DATA/admin.token).
	caFile, adminFile := filepath.Join(data, "ca.pem"), filepath.Join(data, "admin.token")
	eventually(t, l, 20*time.Second, "the control plane's ca.pem and admin.token", func() bool {
		_, e1 := os.Stat(caFile)
		_, e2 := os.Stat(adminFile)
		return e1 == nil && e2 == nil
	})
	roots, err := client.LoadCA(caFile)
	if err != nil {
		t.Fatal(err)
	}
	adminTok, _ := os.ReadFile(adminFile)
	admin := strings.TrimSpace(string(adminTok))
	api := l.client("ctl", false)
	api.Transport.(*http.Transport).TLSClientConfig = client.TLSConfig(roots, nil)
	apiDo := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, ctlURL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := api.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually(t, l, 20*time.Second, "the control plane", func() bool { c, _ := apiDo("GET", "/healthz", "", ""); return c == 200 })
	tokens := map[string]string{}
	for _, node := range []string{"orders-1", "web-1", "evil-1"} {
		code, b := apiDo("POST", "/v1/tokens", admin, `{"node":"`+node+`"}`)
		var tr struct{ Token string }
		if code != 201 || json.Unmarshal([]byte(b), &tr) != nil {
			t.Fatalf("token for %s: %d %s", node, code, b)
		}
		tokens[node] = tr.Token
		f := filepath.Join(l.dir, node+".token")
		_ = os.WriteFile(f, []byte(tr.Token), 0o600)
	}
	appCfg := filepath.Join(l.dir, "app.yaml")
	_ = os.WriteFile(appCfg, []byte(appYAML), 0o644)
	l.start("orders", "app", "proxy", "-c", appCfg, "-wasm-cache", "", "-log-level", "warn")
	for host, node := range map[string]string{"orders": "orders-1", "web": "web-1", "evil": "evil-1"} {
		l.start(host, node, "proxy", "--control", ctlURL, "--control-ca", caFile, "--node", node, "--join-token-file", filepath.Join(l.dir, node+".token"),
			"--bundle-poll", "200ms", "--snapshot-cache", filepath.Join(l.dir, node+"-cache"), "-wasm-cache", "", "-admin", "off", "-log-level", "info")
	}
	web := l.client("web", true)
	webURL := "http://" + l.hosts["web"].addr + ":15001/"
	getVia := func(c *http.Client, base, host, path string) (int, string, string) {
		req, _ := http.NewRequest("GET", base+strings.TrimPrefix(path, "/"), nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error(), ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("X-Weft-Authz")
	}

	t.Run("valid identity allowed", func(t *testing.T) {
		eventually(t, l, 40*time.Second, "web → orders over mTLS", func() bool {
			c, b, _ := getVia(web, webURL, "orders", "/x")
			return c == 200 && b == "orders app"
		})
	})
	t.Run("policy denial", func(t *testing.T) {
		evil := l.client("evil", false)
		evilURL := "http://" + l.hosts["evil"].addr + ":15001/"
		var c int
		var why string
		eventually(t, l, 30*time.Second, "the intruder's sidecar to answer", func() bool {
			c, _, why = getVia(evil, evilURL, "orders.shop", "/x")
			return c == 403 || c == 200
		})
		if c != 403 || why != "denied:default" {
			t.Fatalf("intruder → orders: %d %q, want 403 denied:default", c, why)
		}
	})
	inbound := l.hosts["orders"].addr + ":15006"
	evilDial := l.dialIn("evil")
	rawGet := func(cfg *tls.Config) (int, error) {
		conn, err := evilDial(context.Background(), "tcp", inbound)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if cfg != nil {
			tc := tls.Client(conn, cfg)
			if err := tc.Handshake(); err != nil {
				return 0, err
			}
			conn = tc
		}
		fmt.Fprintf(conn, "GET /x HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	t.Run("plaintext refused in strict mode", func(t *testing.T) {
		if c, err := rawGet(nil); err == nil {
			t.Fatalf("plaintext got HTTP %d", c)
		}
	})
	t.Run("certificate from another CA refused", func(t *testing.T) {
		other, err := ca.Open(ca.Options{Dir: filepath.Join(l.dir, "otherca"), TrustDomain: "weft.test"})
		if err != nil {
			t.Fatal(err)
		}
		if c, err := rawGet(clientCert(t, other, "spiffe://weft.test/ns/shop/sa/web")); err == nil {
			t.Fatalf("a certificate from another CA got HTTP %d", c)
		}
	})
	t.Run("expired certificate refused", func(t *testing.T) {
		// Certificate times have whole-second precision, so a 1 s lifetime
		// can be over before the first handshake: 3 s leaves at least 2.
		short, err := ca.Open(ca.Options{Dir: filepath.Join(data, "ca"), TrustDomain: "weft.test", TTL: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		cfg := clientCert(t, short, "spiffe://weft.test/ns/shop/sa/web")
		leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if c, err := rawGet(cfg); err != nil || c != 200 {
			t.Fatalf("while valid: %d %v (a certificate of the mesh CA for web must be accepted)", c, err)
		}
		// Wait until the certificate's own NotAfter has passed, not a
		// fixed time.
		time.Sleep(time.Until(leaf.NotAfter) + 1100*time.Millisecond)
		if c, err := rawGet(cfg); err == nil {
			t.Fatalf("an expired certificate got HTTP %d", c)
		}
	})
	t.Run("CSR for a foreign identity refused", func(t *testing.T) {
		body := func(node string, uris ...string) string {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tmpl := &x509.CertificateRequest{}
			for _, u := range uris {
				p, _ := url.Parse(u)
				tmpl.URIs = append(tmpl.URIs, p)
			}
			der, _ := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
			b, _ := json.Marshal(map[string]string{"node": node, "csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
			return string(b)
		}
		// evil-1's sidecar spent its token; the intruder gets a fresh one.
		code, b := apiDo("POST", "/v1/tokens", admin, `{"node":"evil-1"}`)
		var tr struct{ Token string }
		if code != 201 || json.Unmarshal([]byte(b), &tr) != nil {
			t.Fatalf("token for evil-1: %d %s", code, b)
		}
		if c, b := apiDo("POST", "/v1/certificate", tr.Token, body("evil-1", "spiffe://weft.test/ns/shop/sa/orders")); c != 403 {
			t.Fatalf("evil-1 asking for orders' identity: %d %s", c, b)
		}
		if c, b := apiDo("POST", "/v1/certificate", tr.Token, body("orders-1")); c != 403 {
			t.Fatalf("evil-1's token for node orders-1: %d %s", c, b)
		}
		if c, b := apiDo("POST", "/v1/certificate", tokens["evil-1"], body("evil-1")); c != 401 {
			t.Fatalf("evil-1's spent token: %d %s", c, b)
		}
		if c, b := apiDo("POST", "/v1/certificate", "", body("orders-1")); c != 401 {
			t.Fatalf("no token: %d %s", c, b)
		}
	})
	t.Run("rotation under load without failures", func(t *testing.T) {
		var ok, failed atomic.Int64
		var first atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var stopOnce sync.Once
		stopLoad := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
		t.Cleanup(stopLoad) // also when a wait below fails
		loadStart := time.Now()
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := l.client("web", true)
				defer c.CloseIdleConnections()
				for i := 0; i < 100000; i++ { // bounded
					select {
					case <-stop:
						return
					default:
					}
					code, b, _ := getVia(c, webURL, "orders", "/x")
					if code == 200 {
						ok.Add(1)
					} else {
						failed.Add(1)
						first.CompareAndSwap(nil, fmt.Sprintf("%d %s", code, b))
					}
					if i%20 == 0 {
						c.CloseIdleConnections()
					}
				}
			}()
		}
		// Past a renewal under load (4s TTL: every 2s), however busy the
		// machine is.
		webLog := filepath.Join(l.dir, "web-1.log")
		eventually(t, l, 30*time.Second, "a renewal of web-1 under load", func() bool {
			return ok.Load() > 0 && scheduledRenewalAfter(webLog, loadStart)
		})
		rotated := time.Now()
		if c, b := apiDo("POST", "/v1/ca/rotate", admin, ""); c != 200 {
			t.Errorf("rotate: %d %s", c, b)
		}
		// The CA signs with the new root once the propagation (1s) is over:
		// wait (bounded; the machine may be busy), with the load on, for
		// web-1 to hold a certificate issued after that. Either the bundle
		// poll sees the new signer first ("signing root changed") or a
		// scheduled renewal lands on it; both count.
		renewed := false
		for end := time.Now().Add(30 * time.Second); !renewed && time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			renewed = renewedAfter(webLog, rotated.Add(1500*time.Millisecond))
		}
		// Requests on the new certificates.
		okAtRenewal := ok.Load()
		eventually(t, l, 30*time.Second, "requests after the renewal", func() bool { return ok.Load() >= okAtRenewal+20 || failed.Load() > 0 })
		stopLoad()
		t.Logf("requests ok=%d failed=%d", ok.Load(), failed.Load())
		if failed.Load() != 0 || ok.Load() < 20 {
			t.Fatalf("ok=%d failed=%d (first: %v)\n%s", ok.Load(), failed.Load(), first.Load(), l.logs())
		}
		if c, b := apiDo("GET", "/v1/bundle", "", ""); c != 200 || strings.Count(b, "BEGIN CERTIFICATE") != 2 {
			t.Fatalf("bundle after rotation: %d (want the old and new roots)", c)
		}
		if !renewed {
			t.Fatalf("web-1 did not renew on the CA rotation:\n%s", l.logs())
		}
	})
	web.CloseIdleConnections()
}

func clientCert(t *testing.T, c *ca.CA, id string) *tls.Config {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	is, err := c.Sign(ca.Request{CSR: csr, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: is.Chain, PrivateKey: key}}, InsecureSkipVerify: true}
}

func eventually(t *testing.T, l *lab, max time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\n%s", what, l.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// renewedAfter reports whether a sidecar's log shows it switching to the
// CA's new signing root, or renewing its certificate after t.
// scheduledRenewalAfter reports whether logFile shows a "certificate
// renewed" after t (a scheduled renewal, whatever the signer).
func scheduledRenewalAfter(logFile string, t time.Time) bool {
	data, _ := os.ReadFile(logFile)
	for _, line := range bytes.Split(data, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"certificate renewed"`)) {
			continue
		}
		var entry struct {
			TS string `json:"ts"`
		}
		if json.Unmarshal(line, &entry) != nil {
			continue
		}
		if ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", entry.TS); err == nil && ts.After(t) {
			return true
		}
	}
	return false
}

func renewedAfter(logFile string, t time.Time) bool {
	data, _ := os.ReadFile(logFile)
	for _, line := range bytes.Split(data, []byte("\n")) {
		if bytes.Contains(line, []byte("signing root changed")) {
			return true
		}
		if !bytes.Contains(line, []byte(`"certificate renewed"`)) {
			continue
		}
		var entry struct {
			TS string `json:"ts"`
		}
		if json.Unmarshal(line, &entry) != nil {
			continue
		}
		if ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", entry.TS); err == nil && ts.After(t) {
			return true
		}
	}
	return false
}
