//go:build linux

package kube_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/internal/kubetest"
	"github.com/weftmesh/weft/control/internal/meshtest"
	"github.com/weftmesh/weft/proxy/config"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// recorder is a watching sidecar's applier: it records when the config
// it applies first satisfies the condition the benchmark waits for.
type recorder struct {
	mu   sync.Mutex
	cond func(raw []byte) bool
	at   time.Time
	done chan struct{}
	last []byte
}

func (r *recorder) Apply(_ context.Context, _ *config.Config, raw []byte, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = raw
	if r.cond != nil && r.cond(raw) {
		r.at, r.cond = time.Now(), nil
		close(r.done)
	}
	return nil
}

// expect arms the recorder: done closes when an applied config (the
// current one included) satisfies cond.
func (r *recorder) expect(cond func([]byte) bool) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = make(chan struct{})
	if r.last != nil && cond(r.last) {
		r.at = time.Now()
		close(r.done)
		return r.done
	}
	r.cond = cond
	return r.done
}

// procStat reads a process's CPU time (user+system) and its resident and
// peak resident memory.
func procStat(pid int) (cpu time.Duration, rss, hwm int64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cpu = time.Duration(ut+st) * (time.Second / 100) // USER_HZ
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				if f[0] == "VmRSS:" {
					rss = kb << 10
				} else {
					hwm = kb << 10
				}
			}
		}
	}
	return
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkKubeScale measures the Kubernetes source at scale on the real
// API server: WEFT_KUBE_SERVICES Services (1000) of WEFT_KUBE_ENDPOINTS
// endpoints (10) each, WEFT_KUBE_SIDECARS watching sidecars (100: the
// sidecar's control client, which fetches and parses every snapshot, with
// an applier that records when the change arrives instead of a proxy), and
// a `weft control -kubeconfig` process running as the manifests'
// weft-control service account. Each of WEFT_KUBE_CHANGES changes (20)
// turns one endpoint not ready; it reports the time from the EndpointSlice
// update to every sidecar applying it (p50, p99 over changes), per-sidecar
// p50/p99, and the control plane's CPU and memory.
//
//	go test ./control/kube/ -run '^$' -bench KubeScale -benchtime 1x -timeout 30m
func BenchmarkKubeScale(b *testing.B) {
	nSvc, nEp, nSc, nChange := envInt("WEFT_KUBE_SERVICES", 1000), envInt("WEFT_KUBE_ENDPOINTS", 10), envInt("WEFT_KUBE_SIDECARS", 100), envInt("WEFT_KUBE_CHANGES", 20)
	e := kubetest.Shared(b)
	ns := e.NewNamespace("scale")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	addr := func(svc, ep int) string { return fmt.Sprintf("10.%d.%d.%d", 1+svc/250, svc%250, 1+ep) }
	slices := make([]*discoveryv1.EndpointSlice, nSvc)
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := fmt.Sprintf("svc-%04d", i)
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
					Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
				sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}}}
				for j := range nEp {
					sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{addr(i, j)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
				}
				_, err := e.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
				if err == nil {
					sl, err = e.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, sl, metav1.CreateOptions{})
				}
				errMu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				slices[i] = sl
				errMu.Unlock()
			}
		}()
	}
	for i := range nSvc {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.Logf("created %d Services with %d endpoints each in %s", nSvc, nEp, time.Since(start))

	// The control plane, as a process of its own (its CPU and memory are
	// its own), running as the manifests' service account.
	kc := e.WriteKubeconfig(controlPlaneConfig(b, e))
	tmp := b.TempDir()
	bin := filepath.Join(tmp, "weft")
	build := exec.Command("go", "build", "-o", bin, "./cmd/weft")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building weft: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "mesh")
	_ = os.MkdirAll(dir, 0o755)
	var sc strings.Builder
	for i := range nSc {
		fmt.Fprintf(&sc, "---\nkind: Sidecar\nname: w%03d\nnamespace: %s\nspec: {outbound: \"127.0.0.1:0\"}\n", i, ns)
	}
	if err := os.WriteFile(filepath.Join(dir, "sidecars.yaml"), []byte(sc.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	listen := meshtest.FreeAddr(b)
	var logBuf bytes.Buffer
	cmd := exec.Command(bin, "control", "-data", filepath.Join(tmp, "data"), "-dir", dir, "-kubeconfig", kc,
		"-insecure-api", "-addr", listen, "-scrape", "0", "-log-level", cmp.Or(os.Getenv("WEFT_KUBE_LOG"), "warn"))
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	startCP := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := "http://" + listen
	deadline := time.Now().Add(5 * time.Minute)
	for {
		resp, err := http.Get(url + "/v1/status")
		if err == nil {
			var st struct {
				KubeSource *struct{ Resources int } `json:"kube_source"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.KubeSource != nil && st.KubeSource.Resources >= nSvc {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("the control plane did not sync the cluster in 5m:\n%s", logBuf.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("control plane up with %d services in %s", nSvc, time.Since(startCP))

	recs := make([]*recorder, nSc)
	wctx, wcancel := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	defer func() { wcancel(); wwg.Wait() }()
	first := addr(nSvc-1, nEp-1)
	var waits []<-chan struct{}
	for i := range nSc {
		recs[i] = &recorder{}
		waits = append(waits, recs[i].expect(func(raw []byte) bool { return bytes.Contains(raw, []byte(first+":8080")) }))
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			_ = client.Run(wctx, client.Options{URL: url, NodeID: fmt.Sprintf("w%03d", i), Applier: recs[i], Logger: meshtest.Logger(b),
				ModuleDir: filepath.Join(tmp, "modules"), Wait: 30 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
		}()
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			b.Fatal("sidecars did not get their first config")
		}
	}
	pid := cmd.Process.Pid
	_, rssIdle, _ := procStat(pid)
	cpu0, t0 := func() (time.Duration, time.Time) { c, _, _ := procStat(pid); return c, time.Now() }()

	var all, each []time.Duration
	b.ResetTimer()
	for n := range nChange {
		i := (n*37 + 11) % nSvc
		gone := addr(i, n%nEp) + ":8080"
		waits = waits[:0]
		for _, r := range recs {
			waits = append(waits, r.expect(func(raw []byte) bool { return !bytes.Contains(raw, []byte(gone)) }))
		}
		sl := slices[i].DeepCopy()
		sl.Endpoints[n%nEp].Conditions.Ready = ptr(false)
		at := time.Now()
		b.Logf("change %d at %s", n, at.Format("15:04:05.000"))
		upd, err := e.Client.DiscoveryV1().EndpointSlices(ns).Update(ctx, sl, metav1.UpdateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		slices[i] = upd
		var slowest time.Duration
		for k, w := range waits {
			select {
			case <-w:
			case <-ctx.Done():
				b.Fatal("a change did not reach every sidecar")
			}
			recs[k].mu.Lock()
			d := recs[k].at.Sub(at)
			recs[k].mu.Unlock()
			each = append(each, d)
			slowest = max(slowest, d)
		}
		all = append(all, slowest)
		fmt.Fprintf(os.Stderr, "change %d: every sidecar applied it after %s\n", n, slowest)
	}
	b.StopTimer()
	if os.Getenv("WEFT_KUBE_LOG") != "" {
		_ = os.WriteFile(filepath.Join(os.TempDir(), "weft-kube-scale.log"), logBuf.Bytes(), 0o644)
	}
	cpu1, t1 := func() (time.Duration, time.Time) { c, _, _ := procStat(pid); return c, time.Now() }()
	_, rss, hwm := procStat(pid)
	cpuPct := 100 * float64(cpu1-cpu0) / float64(t1.Sub(t0))
	b.ReportMetric(float64(pct(all, 0.5).Milliseconds()), "all-p50-ms")
	b.ReportMetric(float64(pct(all, 0.99).Milliseconds()), "all-p99-ms")
	b.ReportMetric(float64(pct(each, 0.5).Milliseconds()), "sidecar-p50-ms")
	b.ReportMetric(float64(pct(each, 0.99).Milliseconds()), "sidecar-p99-ms")
	b.ReportMetric(cpuPct, "cp-cpu-%")
	b.ReportMetric(float64((cpu1-cpu0).Milliseconds())/float64(nChange), "cp-cpu-ms/change")
	b.ReportMetric(float64(rss>>20), "cp-rss-MiB")
	b.ReportMetric(float64(hwm>>20), "cp-peak-rss-MiB")
	b.Logf("%d services x %d endpoints, %d sidecars, %d changes: every sidecar applied a change p50 %s p99 %s (per sidecar p50 %s p99 %s); control plane CPU %.0f%% of a core over the changes (%s per change), RSS idle %d MiB, after %d MiB, peak %d MiB",
		nSvc, nEp, nSc, nChange, pct(all, 0.5), pct(all, 0.99), pct(each, 0.5), pct(each, 0.99), cpuPct, (cpu1-cpu0)/time.Duration(nChange), rssIdle>>20, rss>>20, hwm>>20)
}
