package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/bench/proc"
	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
)

// controlCommand is `weft bench control`: the control plane's propagation
// (an API write to every sidecar running it) and its CPU and memory per
// connected sidecar. Control planes and etcd members run as processes of
// their own, so their CPU and memory are theirs alone; the sidecars (real
// proxies with their control clients, each joined with its own token and
// watching over mTLS) run inside this process.
func controlCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench control", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sidecars := fs.Int("sidecars", 100, "sidecars for the propagation runs")
	sizes := fs.String("sizes", "100,300", "sidecar counts for the CPU and memory runs (file store, one replica)")
	changes := fs.Int("changes", 20, "weight changes per run")
	idle := fs.Duration("idle", time.Minute, "idle window over which the control plane's CPU is measured")
	etcdBin := fs.String("etcd-bin", "etcd", "etcd binary for the runs on a three-member etcd (skipped when not found)")
	weftBin := fs.String("weft-bin", "", "weft binary for `weft control` (default: go build ./cmd/weft, or this binary outside the source tree)")
	out := fs.String("out", "bench-out", "directory for control.md and control.json")
	controlProfile := fs.String("control-cpuprofile", "", "write the watched replica's CPU profile (whole run, one file per setup: FILE.1, FILE.2, ...) to this file")
	cpuProfile := fs.String("cpuprofile", "", "write this process's CPU profile (the sidecars' side) over the change bursts to this file")
	keep := fs.Bool("keep", false, "keep the temp dir (data directories, process logs) and print its path")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var sizeList []int
	for _, s := range strings.Split(*sizes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("-sizes: %q is not a sidecar count", s)
		}
		sizeList = append(sizeList, n)
	}
	if *sidecars < 1 || *changes < 1 {
		return errors.New("-sidecars and -changes must be at least 1")
	}
	tmp, err := os.MkdirTemp("", "weft-bench-control-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintln(stderr, "keeping", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	cb := &controlBench{tmp: tmp, stderr: stderr, changes: *changes, idle: *idle, controlProfile: *controlProfile}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		cb.profile = f
	}
	defer cb.stopAll()
	if cb.weft, err = controlWeftBinary(ctx, *weftBin, tmp, stderr); err != nil {
		return err
	}
	up, err := startEchoUpstream()
	if err != nil {
		return err
	}
	defer up.Close()
	cb.upstream = up.Addr().String()

	var results []*controlResult
	run := func(r *controlResult, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", r.Setup, err)
		}
		fmt.Fprintf(stderr, "%s, %d sidecars: propagation p50 %v p99 %v (API call p50 %v); control CPU idle %.3fs/min, %.3fs per change; RSS %.1f MiB\n",
			r.Setup, r.Sidecars, r.P50, r.P99, r.API50, r.IdleCPUPerMin, r.CPUPerChange, float64(r.RSS)/(1<<20))
		results = append(results, r)
		return nil
	}
	r, err := cb.run(ctx, "file store, 1 replica", nil, 1, 0, 0, *sidecars)
	if err := run(r, err); err != nil {
		return err
	}
	etcdPath, lookErr := exec.LookPath(*etcdBin)
	if lookErr != nil {
		fmt.Fprintf(stderr, "no etcd binary (%v): skipping the etcd runs\n", lookErr)
	} else {
		endpoints, err := cb.startEtcd(ctx, etcdPath, 3)
		if err != nil {
			return err
		}
		r, err := cb.run(ctx, "etcd (3 members), 1 replica", endpoints, 1, 0, 0, *sidecars)
		if err := run(r, err); err != nil {
			return err
		}
		r, err = cb.run(ctx, "etcd (3 members), 3 replicas, written on B, sidecars on A", endpoints, 3, 1, 0, *sidecars)
		if err := run(r, err); err != nil {
			return err
		}
	}
	for _, n := range sizeList {
		if n == *sidecars {
			continue // the first run measured it
		}
		r, err := cb.run(ctx, "file store, 1 replica", nil, 1, 0, 0, n)
		if err := run(r, err); err != nil {
			return err
		}
	}
	return writeControlReport(*out, results, stdout)
}

// controlResult is one run: a setup, a sidecar count, the propagation
// figures and the CPU and memory of the replica the sidecars watch.
type controlResult struct {
	Setup    string `json:"setup"`
	Sidecars int    `json:"sidecars"`
	Changes  int    `json:"changes"`
	// P50, P99: from sending the API write to the last sidecar applying.
	P50   time.Duration `json:"p50_ns"`
	P99   time.Duration `json:"p99_ns"`
	API50 time.Duration `json:"api_p50_ns"`
	// IdleCPUPerMin is the watched replica's CPU seconds per minute with
	// every sidecar connected and nothing changing; CPUPerChange its CPU
	// per weight change during the burst (BurstCPU over Changes).
	IdleCPUPerMin float64 `json:"idle_cpu_s_per_min"`
	BurstCPU      float64 `json:"burst_cpu_s"`
	CPUPerChange  float64 `json:"cpu_s_per_change"`
	// RSS and PeakRSS of the watched replica after the burst.
	RSS     int64 `json:"rss_bytes"`
	PeakRSS int64 `json:"peak_rss_bytes"`
	// Stages is where a change's time goes (p50 over the changes).
	Stages stageTimes `json:"stages"`
}

// stageTimes are the p50s over the changes of each stage of a change, from
// sending the API write: the store's commit (etcd txn or file fsync, as
// the writer timed it), the watched replica installing the revision (its
// "mesh changed" log line; ms resolution), the first and last sidecar
// receiving it (parsed, before the proxy applies it), the last sidecar
// applying it, and the slowest sidecar's apply alone.
type stageTimes struct {
	Commit        time.Duration `json:"commit_ns"`
	Installed     time.Duration `json:"installed_ns"`
	FirstReceived time.Duration `json:"first_received_ns"`
	LastReceived  time.Duration `json:"last_received_ns"`
	LastApplied   time.Duration `json:"last_applied_ns"`
	SlowestApply  time.Duration `json:"slowest_apply_ns"`
	// Installed99 and LastReceived99 are the p99s, to place the outliers.
	Installed99    time.Duration `json:"installed_p99_ns"`
	LastReceived99 time.Duration `json:"last_received_p99_ns"`
}

type changeMarks struct {
	start time.Time
	api   time.Duration
	rev   int64
}

// meshChanged reads a replica's "mesh changed" log lines: when it
// installed each revision, and the commit's duration where it wrote it.
func (cb *controlBench) meshChanged(r *replica) (at map[int64]time.Time, commit map[int64]time.Duration) {
	at, commit = map[int64]time.Time{}, map[int64]time.Duration{}
	b, _ := os.ReadFile(filepath.Join(cb.tmp, r.name+".log"))
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.Contains(l, []byte(`"mesh changed"`)) {
			continue
		}
		var e struct {
			TS       string  `json:"ts"`
			Revision int64   `json:"revision"`
			Commit   float64 `json:"commit"`
		}
		if json.Unmarshal(l, &e) != nil {
			continue
		}
		t, err := time.Parse("2006-01-02T15:04:05.000Z0700", e.TS)
		if err != nil {
			continue
		}
		at[e.Revision] = t
		if e.Commit > 0 {
			commit[e.Revision] = time.Duration(e.Commit * float64(time.Second))
		}
	}
	return at, commit
}

func (cb *controlBench) stages(marks []changeMarks, w, wa *replica, scs []*benchSidecar) stageTimes {
	_, commits := cb.meshChanged(w)
	installs, _ := cb.meshChanged(wa)
	var commit, installed, first, lastGot, lastApplied, slowest []time.Duration
	for _, m := range marks {
		v := strconv.FormatInt(m.rev, 10)
		if d, ok := commits[m.rev]; ok {
			commit = append(commit, d)
		}
		if t, ok := installs[m.rev]; ok {
			installed = append(installed, max(0, t.Sub(m.start)))
		}
		var f, lg, la, sl time.Duration
		f = time.Hour
		for _, s := range scs {
			s.mu.Lock()
			g, a := s.got[v], s.applied[v]
			s.mu.Unlock()
			if g.IsZero() || a.IsZero() {
				continue
			}
			f, lg, la, sl = min(f, g.Sub(m.start)), max(lg, g.Sub(m.start)), max(la, a.Sub(m.start)), max(sl, a.Sub(g))
		}
		first, lastGot, lastApplied, slowest = append(first, f), append(lastGot, lg), append(lastApplied, la), append(slowest, sl)
	}
	q := func(ds []time.Duration, p int) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		ds = append([]time.Duration(nil), ds...)
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[min(len(ds)-1, len(ds)*p/100)]
	}
	return stageTimes{Commit: q(commit, 50), Installed: q(installed, 50), FirstReceived: q(first, 50), LastReceived: q(lastGot, 50),
		LastApplied: q(lastApplied, 50), SlowestApply: q(slowest, 50), Installed99: q(installed, 99), LastReceived99: q(lastGot, 99)}
}

type controlBench struct {
	tmp      string
	stderr   io.Writer
	weft     string
	upstream string
	changes  int
	idle     time.Duration
	seq      int
	profile  io.Writer // CPU profile of the change bursts, or nil
	// controlProfile is where the watched replica writes its CPU profile
	// ("": none), suffixed by the run's number.
	controlProfile string

	mu    sync.Mutex
	procs []*proc.Process
}

func (cb *controlBench) start(name string, path string, args ...string) (*proc.Process, error) {
	logf, err := os.Create(filepath.Join(cb.tmp, name+".log"))
	if err != nil {
		return nil, err
	}
	p, err := proc.Start(proc.Spec{Name: name, Path: path, Args: args, Stdout: logf, Stderr: logf})
	if err != nil {
		logf.Close()
		return nil, err
	}
	cb.mu.Lock()
	cb.procs = append(cb.procs, p)
	cb.mu.Unlock()
	go func() { <-p.Exited(); logf.Close() }()
	return p, nil
}

func (cb *controlBench) stopAll() {
	cb.mu.Lock()
	ps := cb.procs
	cb.procs = nil
	cb.mu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		_ = ps[i].Stop(5 * time.Second)
	}
}

func (cb *controlBench) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(cb.tmp, name+".log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// startEtcd starts an n-member etcd cluster on loopback (production
// settings: the WAL is fsynced) and returns its client endpoints.
func (cb *controlBench) startEtcd(ctx context.Context, bin string, n int) ([]string, error) {
	var clients, peers, names []string
	for i := 0; i < n; i++ {
		c, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		p, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		clients, peers, names = append(clients, "http://"+c), append(peers, "http://"+p), append(names, fmt.Sprintf("m%d", i))
	}
	var initial []string
	for i := range names {
		initial = append(initial, names[i]+"="+peers[i])
	}
	for i := range names {
		if _, err := cb.start("etcd-"+names[i], bin, "--name", names[i], "--data-dir", filepath.Join(cb.tmp, "etcd-"+names[i]),
			"--listen-client-urls", clients[i], "--advertise-client-urls", clients[i],
			"--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "weft-bench",
			"--log-level", "warn"); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, c := range clients {
		for {
			resp, err := http.Get(c + "/health")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && bytes.Contains(b, []byte(`"health":"true"`)) {
					break
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("etcd at %s not healthy after 60s: %v\n%s", c, err, cb.logTail("etcd-m0"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return clients, nil
}

// replica is one `weft control` process and how to call its API.
type replica struct {
	name  string
	p     *proc.Process
	url   string
	data  string
	token string
	hc    *http.Client
}

// startControl starts a replica; adminToken, when set, is the admin token
// the replicas on its etcd share (made by the first), copied into its data
// directory as an operator would.
func (cb *controlBench) startControl(ctx context.Context, name string, etcd []string, prefix, keyFile, adminToken, profile string) (*replica, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(cb.tmp, name)
	if adminToken != "" {
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(data, "admin.token"), []byte(adminToken+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	// Info: its "mesh changed" lines time the stages of a change.
	args := []string{"control", "-data", data, "-addr", addr, "-log-level", "info", "-scrape", "0"}
	if profile != "" {
		args = append(args, "-cpuprofile", profile)
	}
	if etcd != nil {
		var hosts []string
		for _, e := range etcd {
			hosts = append(hosts, strings.TrimPrefix(e, "http://"))
		}
		args = append(args, "-store", "etcd://"+strings.Join(hosts, ","), "-etcd-insecure", "-etcd-prefix", prefix, "-ca-encryption-key-file", keyFile)
	}
	p, err := cb.start(name, cb.weft, args...)
	if err != nil {
		return nil, err
	}
	r := &replica{name: name, p: p, url: "https://" + addr, data: data}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := r.connect(); err == nil {
			resp, err := r.hc.Get(r.url + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return r, nil
				}
			}
		}
		select {
		case <-p.Exited():
			return nil, fmt.Errorf("%s exited: %v\n%s", name, p.ExitErr(), cb.logTail(name))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s not answering after 60s\n%s", name, cb.logTail(name))
		}
	}
}

// connect reads the replica's CA bundle and admin token once written.
func (r *replica) connect() error {
	if r.hc != nil {
		return nil
	}
	roots, err := client.LoadCA(filepath.Join(r.data, "ca.pem"))
	if err != nil {
		return err
	}
	tok, err := os.ReadFile(filepath.Join(r.data, "admin.token"))
	if err != nil {
		return err
	}
	if r.token = strings.TrimSpace(string(tok)); r.token == "" {
		return errors.New("admin.token not written yet") // read before its write landed
	}
	r.hc = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: client.TLSConfig(roots, nil)}}
	return nil
}

func (r *replica) do(method, path, body string, into any) error {
	req, err := http.NewRequest(method, r.url+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	if strings.HasPrefix(body, "{") {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if into != nil {
		return json.Unmarshal(b, into)
	}
	return nil
}

// benchSidecar is a real proxy kept in sync by its control client; it
// records when it applied each version.
type benchSidecar struct {
	id     string
	p      *proxy.Proxy
	hc     *http.Client // the identity client's
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	applied map[string]time.Time
	// got is when the control client handed the version over (received
	// and parsed), before the proxy applied it.
	got     map[string]time.Time
	changed chan struct{}
}

// Apply applies a snapshot to the proxy and records when.
func (s *benchSidecar) Apply(ctx context.Context, cfg *config.Config, raw []byte, path string) error {
	got := time.Now()
	if err := s.p.Apply(ctx, cfg, raw, path); err != nil {
		return err
	}
	now := time.Now()
	s.mu.Lock()
	s.got[cfg.Version] = got
	s.applied[cfg.Version] = now
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// appliedAt is when version was applied (false: not yet) and a channel
// closed at the next apply.
func (s *benchSidecar) appliedAt(version string) (time.Time, bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.applied[version]
	return t, ok, s.changed
}

func (cb *controlBench) startSidecar(r *replica, id string) (*benchSidecar, error) {
	var tr struct{ Token string }
	if err := r.do("POST", "/v1/tokens", fmt.Sprintf(`{"node":%q}`, id), &tr); err != nil {
		return nil, err
	}
	roots, err := client.LoadCA(filepath.Join(r.data, "ca.pem"))
	if err != nil {
		return nil, err
	}
	log := zap.NewNop()
	src := identity.NewSource()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: client.TLSConfig(roots, src)}}
	ic := &client.IdentityClient{URL: r.url, NodeID: id, Token: tr.Token, Source: src, HTTP: hc}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := proxy.New(ctx, proxy.Options{Logger: log, DrainTimeout: time.Second, Identity: src})
	if err != nil {
		cancel()
		return nil, err
	}
	s := &benchSidecar{id: id, p: p, hc: hc, cancel: cancel, done: make(chan struct{}), applied: map[string]time.Time{}, got: map[string]time.Time{}, changed: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = src.Rotate(ctx, identity.RotateOptions{Signer: ic, Logger: log, MinRetry: 50 * time.Millisecond, MaxRetry: time.Second})
	}()
	go func() {
		defer wg.Done()
		_ = client.Run(ctx, client.Options{URL: r.url, NodeID: id, TLS: client.TLSConfig(roots, src), Applier: s, Logger: log,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
	}()
	go func() { wg.Wait(); close(s.done) }()
	return s, nil
}

func (s *benchSidecar) stop() {
	s.cancel()
	<-s.done
	s.hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.p.Shutdown(ctx)
}

// meshYAML is one two-version service on the echo upstream, n sidecars
// (outbound only) and a traffic rule splitting w1/100-w1.
func benchMeshYAML(upstream string, ids []string, w1 int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kind: Service\nname: orders\nspec:\n  versions:\n    - {name: v1, endpoints: [{address: %q}]}\n    - {name: v2, endpoints: [{address: %q}]}\n", upstream, upstream)
	for _, id := range ids {
		fmt.Fprintf(&b, "---\nkind: Sidecar\nname: %s\nspec:\n  outbound: 127.0.0.1:0\n", id)
	}
	b.WriteString("---\n" + benchRuleYAML(w1))
	return b.String()
}

func benchRuleYAML(w1 int) string {
	return fmt.Sprintf("kind: TrafficRule\nname: orders\nspec:\n  service: orders\n  routes:\n    - name: split\n      split: [{version: v1, weight: %d}, {version: v2, weight: %d}]\n", w1, 100-w1)
}

// run starts `replicas` control planes (on etcd when endpoints are given,
// else one on the file store), n sidecars watching replica `watch`,
// measures the watched replica idle, then makes the weight changes through
// replica `write`, timing each to the last sidecar applying it.
func (cb *controlBench) run(ctx context.Context, setup string, etcd []string, replicas, write, watch, n int) (*controlResult, error) {
	cb.seq++
	res := &controlResult{Setup: setup, Sidecars: n, Changes: cb.changes}
	keyFile := filepath.Join(cb.tmp, "ca.key")
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return res, err
	}
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key[:])+"\n"), 0o600); err != nil {
		return res, err
	}
	prefix := fmt.Sprintf("/run%d/", cb.seq)
	var reps []*replica
	adminToken := ""
	for i := 0; i < replicas; i++ {
		profile := ""
		if i == watch && cb.controlProfile != "" {
			profile = fmt.Sprintf("%s.%d", cb.controlProfile, cb.seq)
		}
		r, err := cb.startControl(ctx, fmt.Sprintf("run%d-control%d", cb.seq, i), etcd, prefix, keyFile, adminToken, profile)
		if err != nil {
			return res, err
		}
		adminToken = r.token
		defer func() {
			_ = r.p.Stop(5 * time.Second)
			r.hc.CloseIdleConnections()
		}()
		reps = append(reps, r)
	}
	w, wa := reps[write], reps[watch]
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%03d", i)
	}
	if err := w.do("POST", "/v1/apply", benchMeshYAML(cb.upstream, ids, 100), nil); err != nil {
		return res, err
	}
	var scs []*benchSidecar
	defer func() {
		var wg sync.WaitGroup
		for _, s := range scs {
			wg.Add(1)
			go func() { defer wg.Done(); s.stop() }()
		}
		wg.Wait()
	}()
	for _, id := range ids {
		s, err := cb.startSidecar(wa, id)
		if err != nil {
			return res, err
		}
		scs = append(scs, s)
	}
	// Every sidecar runs the mesh as applied (the watched replica may be
	// a revision behind the writer for a moment).
	var st struct{ Revision int64 }
	if err := w.do("GET", "/v1/status", "", &st); err != nil {
		return res, err
	}
	if _, err := waitApplied(ctx, scs, strconv.FormatInt(st.Revision, 10), 5*time.Minute); err != nil {
		return res, fmt.Errorf("sidecars joining: %w", err)
	}

	// Idle: every sidecar connected, watching, nothing changing.
	u0, err := wa.p.Usage()
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	select {
	case <-time.After(cb.idle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	u1, err := wa.p.Usage()
	if err != nil {
		return res, err
	}
	res.IdleCPUPerMin = (u1.CPU - u0.CPU).Seconds() / time.Since(t0).Minutes()

	var took, api []time.Duration
	var marks []changeMarks
	if cb.profile != nil && pprof.StartCPUProfile(cb.profile) == nil {
		defer pprof.StopCPUProfile()
		cb.profile = nil // one profile: the first burst
	}
	for i := 0; i < cb.changes; i++ {
		w1 := []int{0, 100}[i%2]
		start := time.Now()
		var wr struct{ Revision int64 }
		if err := w.do("PUT", "/v1/resources/TrafficRule/default/orders", benchRuleYAML(w1), &wr); err != nil {
			return res, fmt.Errorf("change %d: %w", i, err)
		}
		api = append(api, time.Since(start))
		last, err := waitApplied(ctx, scs, strconv.FormatInt(wr.Revision, 10), time.Minute)
		if err != nil {
			return res, fmt.Errorf("change %d: %w", i, err)
		}
		took = append(took, last.Sub(start))
		marks = append(marks, changeMarks{start: start, api: api[len(api)-1], rev: wr.Revision})
	}
	res.Stages = cb.stages(marks, w, wa, scs)
	u2, err := wa.p.Usage()
	if err != nil {
		return res, err
	}
	res.BurstCPU = (u2.CPU - u1.CPU).Seconds()
	res.CPUPerChange = res.BurstCPU / float64(cb.changes)
	res.RSS, _ = readVmRSS(wa.p.PID())
	res.PeakRSS = u2.PeakRSS
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	sort.Slice(api, func(i, j int) bool { return api[i] < api[j] })
	res.P50, res.P99, res.API50 = took[len(took)/2], took[min(len(took)-1, len(took)*99/100)], api[len(api)/2]
	return res, nil
}

// waitApplied waits until every sidecar applied version and returns when
// the last one did.
func waitApplied(ctx context.Context, scs []*benchSidecar, version string, timeout time.Duration) (time.Time, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last time.Time
	for _, s := range scs {
		for {
			at, ok, changed := s.appliedAt(version)
			if ok {
				if at.After(last) {
					last = at
				}
				break
			}
			select {
			case <-changed:
			case <-deadline.C:
				return last, fmt.Errorf("sidecar %s has not applied version %s after %v (version in force %q)", s.id, version, timeout, s.p.Version())
			case <-ctx.Done():
				return last, ctx.Err()
			}
		}
	}
	return last, nil
}

// readVmRSS is a process's resident set now, from /proc/PID/status.
func readVmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS")
}

// echoUpstream answers every request 200 "ok".
type echoUpstream struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

func startEchoUpstream() (*echoUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &echoUpstream{ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })}}
	go func() {
		defer close(u.done)
		_ = u.srv.Serve(ln)
	}()
	return u, nil
}

func (u *echoUpstream) Addr() net.Addr { return u.ln.Addr() }

func (u *echoUpstream) Close() error {
	err := u.srv.Close()
	<-u.done
	return err
}

// controlWeftBinary is -weft-bin, else a build of ./cmd/weft, else this
// binary when it is weft.
func controlWeftBinary(ctx context.Context, given, tmp string, stderr io.Writer) (string, error) {
	if given != "" {
		return given, nil
	}
	root, err := moduleRoot()
	if err != nil {
		if self, serr := os.Executable(); serr == nil && filepath.Base(self) == "weft" {
			return self, nil
		}
		return "", fmt.Errorf("weft binary: %w (pass -weft-bin)", err)
	}
	out := filepath.Join(tmp, "bin", "weft")
	fmt.Fprintln(stderr, "building weft:", out)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/weft")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/weft: %w\n%s", err, b)
	}
	return out, nil
}

func writeControlReport(dir string, rs []*controlResult, stdout io.Writer) error {
	var b strings.Builder
	b.WriteString("| setup | sidecars | propagation p50 | p99 | API call p50 | control CPU idle (s/min) | CPU per change | RSS | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.3f | %.1f ms | %.1f MiB | %.1f MiB |\n", r.Setup, r.Sidecars, ms(r.P50), ms(r.P99), ms(r.API50),
			r.IdleCPUPerMin, r.CPUPerChange*1000, float64(r.RSS)/(1<<20), float64(r.PeakRSS)/(1<<20))
	}
	b.WriteString("\nWhere a change's time goes (p50 over the changes, from sending the API write; p99 in brackets):\n\n" +
		"| setup | commit (txn/fsync) | installed on watched replica | first sidecar received | last received | last applied | slowest apply | API answered |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		st := r.Stages
		fmt.Fprintf(&b, "| %s | %s | %s (%s) | %s | %s (%s) | %s | %s | %s |\n", r.Setup, ms(st.Commit), ms(st.Installed), ms(st.Installed99),
			ms(st.FirstReceived), ms(st.LastReceived), ms(st.LastReceived99), ms(st.LastApplied), ms(st.SlowestApply), ms(r.API50))
	}
	fmt.Fprint(stdout, b.String())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "control.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	j, _ := json.MarshalIndent(rs, "", "  ")
	return os.WriteFile(filepath.Join(dir, "control.json"), j, 0o644)
}
