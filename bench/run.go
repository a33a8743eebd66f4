package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/bench/grpcload"
	"github.com/weftmesh/weft/bench/loadgen"
	"github.com/weftmesh/weft/bench/proc"
	"github.com/weftmesh/weft/bench/report"
	"github.com/weftmesh/weft/bench/upstream"
)

// Options configure one benchmark run.
type Options struct {
	// Scenarios to run, in order; DefaultScenarios when empty.
	Scenarios []Scenario
	// Baseline is the scenario every ratio is taken against ("direct"
	// when empty).
	Baseline string
	// Load is the load every scenario gets (URL, Name and hooks are set per
	// scenario).
	Load loadgen.Config
	// Upstream is the built-in upstream's behaviour.
	Upstream upstream.Config
	// Quick checks that every scenario that ran got answers and no errors;
	// it never judges a speed.
	Quick bool
	// Pin runs the load generator as a subprocess pinned to LoadCPUs and
	// the upstream and proxies pinned to ServerCPUs (taskset).
	Pin        bool
	LoadCPUs   string
	ServerCPUs string
	// WeftBin is the weft binary for `weft proxy`; when empty it is built
	// once from the source tree into the run's temp dir.
	WeftBin string
	// SelfBin runs `SelfBin bench upstream|load ...` subprocesses when
	// pinning (os.Executable() when empty).
	SelfBin string
	// TempDir holds the run's configs and logs; a new temp dir, removed
	// afterwards, when empty.
	TempDir string
	// Progress receives the load generator's progress lines (nil: none).
	Progress io.Writer
	Logger   *zap.Logger

	// trace, for tests, sees every subprocess started.
	trace func(name string, pid int)
}

// Run runs every scenario and returns the report. The error is non-nil when
// a scenario failed (not when one was skipped); the report then still holds
// every scenario's outcome.
func Run(ctx context.Context, opts Options) (*report.Report, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if len(opts.Scenarios) == 0 {
		opts.Scenarios = DefaultScenarios()
	}
	if opts.Pin {
		if opts.LoadCPUs == "" {
			opts.LoadCPUs = "0"
		}
		if opts.ServerCPUs == "" {
			opts.ServerCPUs = "1"
		}
		if opts.SelfBin == "" {
			self, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("bench: pinning runs the harness's own binary: %w", err)
			}
			opts.SelfBin = self
		}
	}
	r := &runner{opts: opts}
	if opts.TempDir == "" {
		dir, err := os.MkdirTemp("", "weft-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(dir)
		r.tmp = dir
	} else {
		r.tmp = opts.TempDir
	}

	rep := &report.Report{
		Title:   "Weft benchmark",
		Started: time.Now(),
		Host:    hostInfo(),
		Settings: report.Settings{
			Mode:        loadgen.Closed,
			Connections: orDefault(opts.Load.Connections, loadgen.DefaultConnections),
			Rate:        opts.Load.Rate,
			Warmup:      report.Secs(opts.Load.Warmup),
			Duration:    report.Secs(opts.Load.Duration),
			MaxRequests: int64(orDefault(int(opts.Load.MaxRequests), loadgen.DefaultMaxRequests)),
			BodySize:    orDefault(opts.Upstream.BodySize, upstream.DefaultBodySize),
			Delay:       report.Secs(opts.Upstream.Delay),
			Pinned:      opts.Pin,
			Quick:       opts.Quick,
		},
	}
	if opts.Load.Rate > 0 {
		rep.Settings.Mode = loadgen.Open
	}
	if opts.Pin {
		rep.Settings.LoadCPUs, rep.Settings.ServerCPUs = opts.LoadCPUs, opts.ServerCPUs
	}
	if opts.Upstream.BodySize < 0 {
		rep.Settings.BodySize = 0
	}

	var failed []string
	for _, sc := range opts.Scenarios {
		if ctx.Err() != nil {
			rep.Scenarios = append(rep.Scenarios, report.Scenario{Name: sc.Name, Description: sc.Description,
				Status: report.StatusSkipped, Reason: "interrupted"})
			continue
		}
		res := r.runScenario(ctx, sc)
		if res.Status == report.StatusFailed {
			failed = append(failed, sc.Name)
		}
		rep.Scenarios = append(rep.Scenarios, res)
	}
	if opts.Baseline == "" {
		opts.Baseline = "direct"
	}
	rep.ComputeRatios(opts.Baseline)
	rep.ComputeComparisons()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("bench: interrupted: %w", ctx.Err())
	}
	if len(failed) > 0 {
		return rep, fmt.Errorf("bench: scenarios failed: %s", strings.Join(failed, ", "))
	}
	return rep, nil
}

type runner struct {
	opts Options
	tmp  string

	weftOnce sync.Once
	weftBin  string
	weftErr  error

	guestsMu sync.Mutex
	guests   map[string]*guestBuild // by module dir and package
}

// selfBinary is the binary that runs `bench SUB` subprocesses outside the
// load path (an upstream to kill, a reference proxy): SelfBin when set
// (always when pinning), else the weft binary.
func (r *runner) selfBinary(ctx context.Context) (string, error) {
	if r.opts.SelfBin != "" {
		return r.opts.SelfBin, nil
	}
	return r.weftBinary(ctx)
}

// selfArgs is the argument list that makes SelfBin run `bench SUB`.
func (r *runner) selfArgs(sub string) []string { return []string{"bench", sub} }

func (r *runner) runScenario(ctx context.Context, sc Scenario) report.Scenario {
	out := report.Scenario{Name: sc.Name, Description: sc.Description, Compare: sc.Compare}
	log := r.opts.Logger.With(zap.String("scenario", sc.Name))
	dir := filepath.Join(r.tmp, sc.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		out.Status, out.Reason = report.StatusFailed, err.Error()
		return out
	}
	env := &Env{Dir: dir, Logger: log, name: sc.Name, r: r}
	fail := func(err error) report.Scenario {
		if ctx.Err() != nil {
			out.Status, out.Reason = report.StatusSkipped, "interrupted"
			return out
		}
		if errors.Is(err, ErrSkip) {
			out.Status = report.StatusSkipped
			log.Info("skipped", zap.String("reason", err.Error()))
		} else {
			out.Status = report.StatusFailed
			log.Error("failed", zap.Error(err))
		}
		out.Reason = err.Error()
		return out
	}

	log.Info("setting up")
	url, err := sc.Setup(ctx, env)
	if err == nil {
		err = r.measure(ctx, env, sc, url, &out)
	}
	if sc.Teardown != nil {
		if terr := sc.Teardown(env); terr != nil && err == nil {
			err = fmt.Errorf("scenario %q: teardown: %w", sc.Name, terr)
		}
	}
	if cerr := env.close(); cerr != nil && err == nil {
		err = fmt.Errorf("scenario %q: stop: %w", sc.Name, cerr)
	}
	if err != nil {
		return fail(err)
	}
	if r.opts.Quick {
		check := quickCheck
		if sc.Check != nil {
			check = sc.Check
		}
		if err := check(&out); err != nil {
			return fail(err)
		}
	}
	out.Status = report.StatusOK
	log.Info("done", zap.Float64("rps", out.RPS), zap.Int64("requests", out.Requests),
		zap.Float64("p99_ms", float64(out.Latency.P99)/1000))
	return out
}

// quickCheck is all a quick run asserts: the harness got answers, and no
// request failed. Never a speed.
func quickCheck(s *report.Scenario) error {
	if s.Requests == 0 {
		return fmt.Errorf("scenario %q: no request was answered", s.Name)
	}
	if n := s.Errors.Total(); n > 0 {
		return fmt.Errorf("scenario %q: %d requests failed (%+v)", s.Name, n, s.Errors)
	}
	if n := s.Statuses.Non2xx(); n > 0 {
		return fmt.Errorf("scenario %q: %d responses were not 2xx (%+v)", s.Name, n, s.Statuses)
	}
	return nil
}

// measure loads url and samples the measured processes' usage at both ends
// of the measured window.
func (r *runner) measure(ctx context.Context, env *Env, sc Scenario, url string, out *report.Scenario) error {
	cfg := r.opts.Load
	cfg.Name, cfg.URL, cfg.Progress = env.name, url, r.opts.Progress
	cfg.Protocol, cfg.Conns = sc.Protocol, sc.Conns
	cfg.MessageSize = max(orDefault(r.opts.Upstream.BodySize, upstream.DefaultBodySize), 0)
	out.Protocol = orDefaultString(sc.Protocol, loadgen.HTTP1)
	cfg.Headers = append(append([]loadgen.Header(nil), cfg.Headers...), env.headers...)
	before := make([]proc.Usage, len(env.measured))
	after := make([]proc.Usage, len(env.measured))
	upBefore := make([]proc.Usage, len(env.upstreams))
	upAfter := make([]proc.Usage, len(env.upstreams))
	var usageErr error
	sample := func(dst, upDst []proc.Usage) func() {
		return func() {
			for i, p := range env.measured {
				u, err := p.Usage()
				if err != nil && usageErr == nil {
					usageErr = err
				}
				dst[i] = u
			}
			for i, p := range env.upstreams {
				u, err := p.Usage()
				if err != nil && usageErr == nil {
					usageErr = err
				}
				upDst[i] = u
			}
		}
	}
	cfg.OnMeasureStart, cfg.OnMeasureEnd = sample(before, upBefore), sample(after, upAfter)
	var fault *faultRun
	if sc.Fault != nil {
		fault = &faultRun{f: sc.Fault, env: env, after: time.Duration(float64(cfg.Duration) * sc.Fault.At), loadDone: make(chan struct{})}
		measureStart := cfg.OnMeasureStart
		cfg.OnMeasureStart = func() { measureStart(); fault.start(ctx) }
	}

	var res *loadgen.Result
	var client *clientUsage
	var err error
	if r.opts.Pin {
		client = new(clientUsage)
		res, err = r.loadSubprocess(ctx, env, cfg, client)
	} else {
		res, err = runLoad(ctx, cfg)
	}
	if fault != nil {
		if ferr := fault.wait(); ferr != nil && err == nil {
			err = fmt.Errorf("scenario %q: fault: %w", env.name, ferr)
		}
	}
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("scenario %q: %w", env.name, ctx.Err())
	}
	for _, p := range env.measured {
		select {
		case <-p.Exited():
			return fmt.Errorf("scenario %q: %s exited during the run (%v); log:\n%s", env.name, p.Name(), p.ExitErr(), env.LogTail(p.Name(), 20))
		default:
		}
	}
	out.Requests = res.Requests
	out.RPS = res.RPS()
	out.Elapsed = report.Secs(res.Elapsed)
	out.Errors = res.Errors
	out.Statuses = res.Status
	out.Dropped = res.Dropped
	out.Latency = loadgen.Summarize(res.Latency)
	if res.Mode == loadgen.Open {
		s := loadgen.Summarize(res.ServiceTime)
		out.ServiceTime = &s
	}
	if fault != nil {
		out.Fault = fault.report(res)
	}
	if usageErr != nil {
		return fmt.Errorf("scenario %q: measuring CPU: %w", env.name, usageErr)
	}
	if client != nil {
		if cpu, ok := client.cpu(); ok {
			out.Client = report.NewProcessCPU("load", cpu, client.after.PeakRSS, res.Requests)
		}
	}
	if len(env.upstreams) > 0 {
		var cpu time.Duration
		var rss int64
		for i := range env.upstreams {
			cpu += upAfter[i].CPU - upBefore[i].CPU
			rss += upAfter[i].PeakRSS
		}
		out.Upstream = report.NewProcessCPU(env.upstreams[0].Name(), cpu, rss, res.Requests)
	}
	if len(env.measured) > 0 {
		var cpu time.Duration
		var rss int64
		var names []string
		for i, p := range env.measured {
			cpu += after[i].CPU - before[i].CPU
			rss += after[i].PeakRSS
			names = append(names, p.Name())
		}
		out.CPU = report.NewCPU(names, cpu, rss, res.Requests)
		if len(env.measured) > 1 {
			for i, p := range env.measured {
				out.CPU.AddProcess(p.Name(), after[i].CPU-before[i].CPU, after[i].PeakRSS, res.Requests)
			}
		}
	}
	return nil
}

// faultRun does a scenario's Fault during its measured window.
type faultRun struct {
	f        *Fault
	env      *Env
	after    time.Duration // into the measured window
	loadDone chan struct{}

	started bool
	done    chan struct{}
	at      time.Duration // when it happened, from the window's start
	err     error
}

// start schedules the fault; the load generator calls it as the measured
// window opens.
func (fr *faultRun) start(ctx context.Context) {
	fr.started = true
	fr.done = make(chan struct{})
	begin := time.Now()
	go func() {
		defer close(fr.done)
		t := time.NewTimer(fr.after)
		defer t.Stop()
		select {
		case <-t.C:
		case <-fr.loadDone:
			fr.err = fmt.Errorf("the load ended before the fault, %s into the window", fr.after)
			return
		case <-ctx.Done():
			fr.err = ctx.Err()
			return
		}
		fr.at = time.Since(begin)
		fr.err = fr.f.Do(fr.env)
	}()
}

// wait returns the fault's outcome once the load has ended.
func (fr *faultRun) wait() error {
	close(fr.loadDone)
	if !fr.started {
		return errors.New("the measured window never opened")
	}
	<-fr.done
	return fr.err
}

// report places the load's failures against the fault.
func (fr *faultRun) report(res *loadgen.Result) *report.Fault {
	out := &report.Fault{Description: fr.f.Description, At: report.Secs(fr.at)}
	if res.LastFailure > fr.at {
		out.FailedAfter = true
		out.Recovery = report.Secs(res.LastFailure - fr.at)
	}
	return out
}

// Markers the `bench load` subprocess prints on stdout around the measured
// window; its last stdout line is the Result as JSON.
const (
	markerMeasureStart = "weft-bench-load: measure start"
	markerMeasureEnd   = "weft-bench-load: measure end"
	// markerCPU precedes the generator's own CPU over the window, in
	// nanoseconds (before the end marker).
	markerCPU = "weft-bench-load: cpu ns"
)

// clientUsage is the load generator process's usage at both ends of the
// measured window.
type clientUsage struct {
	before, after proc.Usage
	sampled       int // markers seen
	err           error
	// reported is the CPU the generator measured itself (getrusage), which
	// /proc may miss when the markers are read after it exited.
	reported    time.Duration
	hasReported bool
}

// cpu is the generator's CPU over the window.
func (c *clientUsage) cpu() (time.Duration, bool) {
	if c.hasReported {
		return c.reported, true
	}
	if c.err != nil || c.sampled != 2 || c.after.Procs == 0 {
		return 0, false
	}
	return c.after.CPU - c.before.CPU, true
}

func (c *clientUsage) sample(p *proc.Process, dst *proc.Usage) {
	u, err := p.Usage()
	if err != nil && c.err == nil {
		c.err = err
	}
	*dst = u
	c.sampled++
}

// loadSubprocess runs the load generator as `SelfBin bench load` pinned to
// LoadCPUs, relaying its progress and its measure markers; it samples the
// generator's own CPU into client at the markers.
func (r *runner) loadSubprocess(ctx context.Context, env *Env, cfg loadgen.Config, client *clientUsage) (*loadgen.Result, error) {
	args := append(r.selfArgs("load"), loadFlags(cfg)...)
	args = append(args, "-markers")
	pr, pw := io.Pipe()
	progress := cfg.Progress
	if progress == nil {
		progress = io.Discard
	}
	spec := proc.Spec{Name: "load", Path: r.opts.SelfBin, Args: args, CPUs: r.opts.LoadCPUs, Stdout: pw, Stderr: progress}
	p, err := proc.Start(spec)
	if err != nil {
		return nil, fmt.Errorf("scenario %q: load generator: %w", env.name, err)
	}
	if r.opts.trace != nil {
		r.opts.trace("load", p.PID())
	}
	defer p.Stop(stopGrace)
	defer pr.Close() // unblocks exec's copy should we return before EOF
	go func() {
		select {
		case <-ctx.Done():
			_ = p.Stop(stopGrace)
		case <-p.Exited():
		}
		pw.Close() // exec has copied all output once Wait returned
	}()
	var res *loadgen.Result
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == markerMeasureStart:
			client.sample(p, &client.before)
			cfg.OnMeasureStart()
		case strings.HasPrefix(line, markerCPU+" "):
			if ns, err := strconv.ParseInt(strings.TrimPrefix(line, markerCPU+" "), 10, 64); err == nil {
				client.reported, client.hasReported = time.Duration(ns), true
			}
		case line == markerMeasureEnd:
			client.sample(p, &client.after)
			cfg.OnMeasureEnd()
		case strings.HasPrefix(line, "{"):
			res = new(loadgen.Result)
			if err := json.Unmarshal([]byte(line), res); err != nil {
				return nil, fmt.Errorf("scenario %q: load generator output: %w", env.name, err)
			}
		}
	}
	_, _ = io.Copy(io.Discard, pr) // let the writer finish should Scan stop early
	<-p.Exited()
	if err := p.ExitErr(); err != nil {
		return nil, fmt.Errorf("scenario %q: load generator: %w", env.name, err)
	}
	if res == nil {
		return nil, fmt.Errorf("scenario %q: load generator printed no result", env.name)
	}
	return res, nil
}

// loadFlags are the `weft bench load` flags for cfg.
func loadFlags(cfg loadgen.Config) []string {
	args := []string{
		"-name", cfg.Name,
		"-url", cfg.URL,
		"-c", strconv.Itoa(cfg.Connections),
		"-rate", strconv.FormatFloat(cfg.Rate, 'g', -1, 64),
		"-warmup", cfg.Warmup.String(),
		"-d", cfg.Duration.String(),
		"-n", strconv.FormatInt(cfg.MaxRequests, 10),
		"-timeout", cfg.Timeout.String(),
	}
	if cfg.Protocol != "" {
		args = append(args, "-protocol", cfg.Protocol, "-conns", strconv.Itoa(cfg.Conns),
			"-message-size", strconv.Itoa(cfg.MessageSize))
	}
	for _, h := range cfg.Headers {
		args = append(args, "-H", h.String())
	}
	return args
}

// runLoad runs the load generator in this process with the client
// cfg.Protocol needs (a gRPC one from bench/grpcload).
func runLoad(ctx context.Context, cfg loadgen.Config) (*loadgen.Result, error) {
	if grpcload.Is(cfg.Protocol) {
		c, err := grpcload.New(cfg)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		cfg.Client = c
	}
	return loadgen.Run(ctx, cfg)
}

// weftBinary returns -weft-bin, or builds ./cmd/weft once per run.
func (r *runner) weftBinary(ctx context.Context) (string, error) {
	r.weftOnce.Do(func() {
		if r.opts.WeftBin != "" {
			r.weftBin = r.opts.WeftBin
			return
		}
		root, err := moduleRoot()
		if err != nil {
			// Outside the source tree, `weft bench` itself is a weft binary.
			if self, serr := os.Executable(); serr == nil && filepath.Base(self) == "weft" {
				r.opts.Logger.Info("using this binary for the weft scenarios", zap.String("weft", self))
				r.weftBin = self
				return
			}
			r.weftErr = fmt.Errorf("weft binary: %w; pass -weft-bin", err)
			return
		}
		if !hasGoFiles(filepath.Join(root, "cmd", "weft")) {
			r.weftErr = Skipf("cmd/weft has no Go files yet; pass -weft-bin")
			return
		}
		// Not r.tmp/weft: that is the weft scenario's directory.
		out := filepath.Join(r.tmp, "bin", "weft")
		r.opts.Logger.Info("building weft", zap.String("out", out))
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/weft")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			r.weftErr = fmt.Errorf("weft binary: go build ./cmd/weft: %w\n%s", err, b)
			return
		}
		r.weftBin = out
	})
	return r.weftBin, r.weftErr
}

func hostInfo() report.Host {
	h := report.Host{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

func orDefaultString(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
