package kube_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/internal/kubetest"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/control/kube"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/control/store"
)

func ptr[T any](v T) *T { return &v }

// hostIP is a non-loopback IPv4 address of this machine: the API server
// refuses loopback endpoint addresses.
func hostIP(t testing.TB) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address here: EndpointSlices refuse loopback addresses")
	return ""
}

// upstream is an HTTP server answering 200 with its name, on an address
// an EndpointSlice may hold.
type upstream struct {
	Name, Addr string
	Hits       atomic.Int64
	srv        *http.Server
	done       chan struct{}
}

func startUpstream(t testing.TB, ip, name string) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{Name: name, Addr: ln.Addr().String(), done: make(chan struct{})}
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.Hits.Add(1)
		_, _ = w.Write([]byte(name))
	})}
	go func() { defer close(u.done); _ = u.srv.Serve(ln) }()
	t.Cleanup(u.Stop)
	return u
}

// Stop shuts the upstream down gracefully: requests in flight are
// answered, then its connections close (a pod going away).
func (u *upstream) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = u.srv.Shutdown(ctx)
	<-u.done
}

// upstreamSlice is an EndpointSlice of service svc holding one ready
// endpoint at u's address (each upstream listens on a port of its own, so
// each has a slice of its own).
func upstreamSlice(t testing.TB, ns, svc string, u *upstream) *discoveryv1.EndpointSlice {
	host, p, err := net.SplitHostPort(u.Addr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(p)
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-" + u.Name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(port)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
	}
}

// controlFor starts a control plane whose Kubernetes source reads the
// cluster with cfg, and declares one Sidecar per node in ns (through the
// API, as an operator would).
func controlFor(t testing.TB, cfg *rest.Config, o server.Options, ns string, nodes ...string) *server.Server {
	t.Helper()
	o.DataDir = t.TempDir()
	o.Kube = &kube.Options{Config: cfg}
	cp := meshtest.StartControl(t, o)
	t.Cleanup(func() { _ = cp.Close() })
	var rs []*mesh.Resource
	for _, n := range nodes {
		rs = append(rs, &mesh.Resource{Kind: mesh.KindSidecar, Namespace: ns, Name: n, Spec: &mesh.SidecarSpec{Outbound: "127.0.0.1:0"}})
	}
	if len(rs) > 0 {
		if _, err := cp.Store().Apply(store.Change{Who: "test", Source: store.SourceAPI, Puts: rs}); err != nil {
			t.Fatal(err)
		}
	}
	return cp
}

// waitApplied waits until the store no longer balances service over
// gone, then until every sidecar runs its node's config from then, and
// returns how long that took from since.
func waitApplied(t testing.TB, cp *server.Server, ns, service, gone string, since time.Time, scs ...*meshtest.Sidecar) time.Duration {
	t.Helper()
	meshtest.Eventually(t, "the store dropping "+gone, func() bool {
		o, ok := cp.Store().Get(mesh.Key{Kind: mesh.KindService, Namespace: ns, Name: service})
		if !ok {
			return false
		}
		for _, e := range o.Resource.Service().Endpoints {
			if e.Address == gone {
				return false
			}
		}
		return true
	})
	for _, sc := range scs {
		want := cp.Store().Node(sc.ID).Version
		meshtest.Eventually(t, fmt.Sprintf("sidecar %s applying version %s", sc.ID, want), func() bool {
			v, _ := strconv.ParseInt(sc.Proxy.Version(), 10, 64)
			w, _ := strconv.ParseInt(want, 10, 64)
			return v >= w
		})
	}
	return time.Since(since)
}

// load sends requests through every sidecar until stop, counting answers
// by body and every failure.
type load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	mu       sync.Mutex
	failures []string
}

func startLoad(t testing.TB, host string, scs ...*meshtest.Sidecar) *load {
	l := &load{stop: make(chan struct{})}
	for _, sc := range scs {
		for range 2 {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				for {
					select {
					case <-l.stop:
						return
					default:
					}
					code, b, _, err := sc.Get(host, "/")
					if err != nil || code != 200 {
						l.fail.Add(1)
						l.mu.Lock()
						if len(l.failures) < 5 {
							l.failures = append(l.failures, fmt.Sprintf("%s: %d %q %v", sc.ID, code, b, err))
						}
						l.mu.Unlock()
						continue
					}
					l.ok.Add(1)
				}
			}()
		}
	}
	t.Cleanup(l.end)
	return l
}

func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// Sidecars follow a Service's EndpointSlices under load: a new endpoint
// gets traffic, one that stops being ready leaves every sidecar's load
// balancer (measured), a terminating one is drained before its server
// goes, and no request fails.
func TestSidecarsFollowEndpointSlices(t *testing.T) {
	e := kubetest.Shared(t)
	ns := e.NewNamespace("e2e")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ip := hostIP(t)
	a, b, c := startUpstream(t, ip, "a"), startUpstream(t, ip, "b"), startUpstream(t, ip, "c")
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if _, err := e.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slices := e.Client.DiscoveryV1().EndpointSlices(ns)
	sa, err := slices.Create(ctx, upstreamSlice(t, ns, "orders", a), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := slices.Create(ctx, upstreamSlice(t, ns, "orders", b), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodes := []string{ns + "-s1", ns + "-s2", ns + "-s3"}
	cp := controlFor(t, controlPlaneConfig(t, e), server.Options{}, ns, nodes...)
	var scs []*meshtest.Sidecar
	for _, n := range nodes {
		scs = append(scs, meshtest.StartSidecar(t, meshtest.SidecarOptions{ID: n, URL: cp.URL()}))
	}
	host := "orders." + ns
	for _, sc := range scs {
		meshtest.Eventually(t, sc.ID+" reaching orders", func() bool {
			code, _, _, err := sc.Get(host, "/")
			return err == nil && code == 200
		})
	}
	l := startLoad(t, host, scs...)

	// Scale up: c gets traffic.
	if _, err := slices.Create(ctx, upstreamSlice(t, ns, "orders", c), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	meshtest.Eventually(t, "c getting requests", func() bool { return c.Hits.Load() > 20 })

	// a stops being ready: it leaves every sidecar's load balancer.
	sa.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false)}
	start := time.Now()
	if _, err := slices.Update(ctx, sa, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := waitApplied(t, cp, ns, "orders", a.Addr, start, scs...)
	t.Logf("a not-ready endpoint left all %d sidecars' load balancers %s after the EndpointSlice update (the issue asks for < 1s)", len(scs), took)
	hits := a.Hits.Load()
	okBefore := l.ok.Load()
	meshtest.Eventually(t, "more requests", func() bool { return l.ok.Load() > okBefore+300 })
	if got := a.Hits.Load(); got != hits {
		t.Fatalf("a got %d requests after it left every load balancer", got-hits)
	}

	// Scale down: b terminates (still serving) and leaves, then its
	// server stops and its slice goes.
	sb.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
	if _, err := slices.Update(ctx, sb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, cp, ns, "orders", b.Addr, time.Now(), scs...)
	b.Stop()
	if err := slices.Delete(ctx, sb.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	okBefore = l.ok.Load()
	meshtest.Eventually(t, "more requests", func() bool { return l.ok.Load() > okBefore+300 })
	l.end()
	if n := l.fail.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed while endpoints scaled: %v", n, n+l.ok.Load(), l.failures)
	}
	if l.ok.Load() == 0 || c.Hits.Load() == 0 {
		t.Fatal("no load went through")
	}
}

// A sidecar joins with its pod's projected service-account token: the
// certificate carries the service account's SPIFFE ID; a token for
// another audience, or of another service account, gets none.
func TestSidecarJoinsWithServiceAccountToken(t *testing.T) {
	e := kubetest.Shared(t)
	ns := e.NewNamespace("join")
	cp := controlFor(t, controlPlaneConfig(t, e), server.Options{CA: &ca.Options{TrustDomain: "td.test"}}, ns)
	node := ns + "-cart-1"
	if _, err := cp.Store().Apply(store.Change{Who: "test", Source: store.SourceAPI, Puts: []*mesh.Resource{{Kind: mesh.KindSidecar, Namespace: ns, Name: node,
		Spec: &mesh.SidecarSpec{Outbound: "127.0.0.1:0", ServiceAccount: "cart"}}}}); err != nil {
		t.Fatal(err)
	}
	post := func(token string) (int, string) {
		t.Helper()
		csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("checked after the token")}))
		body, _ := json.Marshal(map[string]string{"node": node, "csr": csr})
		return meshtest.Do(t, "POST", cp.URL()+"/v1/certificate", string(body), "Authorization", "Bearer "+token)
	}
	if code, msg := post(e.ServiceAccountToken(ns, "cart", "vault")); code != http.StatusUnauthorized || !strings.Contains(msg, "audience weft") {
		t.Fatalf("a token for another audience: %d %s", code, msg)
	}
	if code, msg := post(e.ServiceAccountToken(ns, "shipping", "weft")); code != http.StatusForbidden || !strings.Contains(msg, ns+"/shipping") {
		t.Fatalf("another service account's token: %d %s", code, msg)
	}
	src := meshtest.JoinWith(t, cp.URL(), meshtest.Roots(t, cp), node, e.ServiceAccountToken(ns, "cart", "weft"))
	select {
	case <-src.Ready():
	case <-time.After(60 * time.Second):
		t.Fatal("no certificate with the service-account token")
	}
	if id := src.SVID().ID; id != "spiffe://td.test/ns/"+ns+"/sa/cart" {
		t.Fatalf("SPIFFE ID %s", id)
	}
}
