package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/weftmesh/weft/bench/grpcupstream"
	"github.com/weftmesh/weft/bench/loadgen"
	"github.com/weftmesh/weft/bench/refproxy"
	"github.com/weftmesh/weft/bench/upstream"
)

// Quick-mode defaults: a couple of seconds per scenario.
const (
	quickDuration    = 2 * time.Second
	quickWarmup      = 500 * time.Millisecond
	quickConnections = 8
)

// Command is `weft bench ARGS...`:
//
//	weft bench [flags]                      run scenarios and write the report
//	weft bench filter [flags] FILE.wasm     weft with and without a filter
//	weft bench control [flags]              control-plane propagation, CPU and memory
//	weft bench transfer [flags]             1 GiB transfers, direct vs through weft, each party its own process
//	weft bench list                         list the scenarios
//	weft bench upstream [flags]             run the built-in upstream until interrupted
//	weft bench load [flags]                 run the load generator once, print JSON
//	weft bench grpc-upstream [flags]        run the gRPC upstream until interrupted
//	weft bench ref-proxy [flags]            run a reference proxy (epoll loop or bare fasthttp) until interrupted
//
// It stops every process it started before returning, also on ctrl-C.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 {
		switch args[0] {
		case "upstream":
			return upstreamCommand(ctx, args[1:], stdout, stderr)
		case "load":
			return loadCommand(ctx, args[1:], stdout, stderr)
		case "grpc-upstream":
			return grpcUpstreamCommand(ctx, args[1:], stdout, stderr)
		case "ref-proxy":
			return refProxyCommand(ctx, args[1:], stdout, stderr)
		case "filter":
			return filterCommand(ctx, args[1:], stdout, stderr)
		case "control":
			return controlCommand(ctx, args[1:], stdout, stderr)
		case "transfer":
			return transferCommand(ctx, args[1:], stdout, stderr)
		case "transfer-client":
			return transferClientCommand(ctx, args[1:], stdout, stderr)
		case "list":
			for _, s := range append(DefaultScenarios(), OnDemandScenarios()...) {
				quick := " "
				if s.Quick {
					quick = "q"
				}
				fmt.Fprintf(stdout, "%-22s %s %s\n", s.Name, quick, s.Description)
			}
			fmt.Fprintln(stdout, "\nq: run by -quick unless -scenarios is given; the download and tcp scenarios only when named")
			for _, g := range groupNames() {
				fmt.Fprintf(stdout, "-scenarios %s: %s\n", g, strings.Join(scenarioGroups[g], ","))
			}
			return nil
		}
	}
	return runCommand(ctx, args, stdout, stderr)
}

// runFlags are the flags of a benchmark run, shared by `weft bench` and
// `weft bench filter`.
type runFlags struct {
	fs                        *flag.FlagSet
	duration, warmup, timeout *time.Duration
	delay                     *time.Duration
	conns, bodySize           *int
	rate                      *float64
	maxReq                    *int64
	out, loadCPUs, serverCPUs *string
	weftBin, selfBin          *string
	quick, pin, keep, verbose *bool
}

func newRunFlags(name string, stderr io.Writer) *runFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &runFlags{
		fs:         fs,
		duration:   fs.Duration("d", 10*time.Second, "measured duration per scenario"),
		warmup:     fs.Duration("warmup", 2*time.Second, "warm-up per scenario, not measured"),
		conns:      fs.Int("c", 64, "connections (closed loop) or workers (open loop)"),
		rate:       fs.Float64("rate", 0, "requests per second: open loop, latency from the intended send time (0: closed loop)"),
		maxReq:     fs.Int64("n", 50_000_000, "at most this many measured requests per scenario"),
		timeout:    fs.Duration("timeout", 10*time.Second, "per-request timeout"),
		bodySize:   fs.Int("body-size", upstream.DefaultBodySize, "upstream response body bytes"),
		delay:      fs.Duration("delay", 0, "upstream delay per response"),
		out:        fs.String("out", "bench-out", "directory for report.md, report.json and the SVG charts"),
		quick:      fs.Bool("quick", false, "CI mode: 2 s per scenario, 8 connections, the quick scenarios (see list) unless -scenarios; fails only if the harness does not work (no answers, errors); never judges speed"),
		pin:        fs.Bool("pin", false, "pin the load generator to -load-cpus and upstream+proxy to -server-cpus (taskset; generator and upstream run as subprocesses)"),
		loadCPUs:   fs.String("load-cpus", "0", "CPU list for the load generator with -pin"),
		serverCPUs: fs.String("server-cpus", "1", "CPU list for the upstream and proxy with -pin"),
		weftBin:    fs.String("weft-bin", "", "weft binary for the weft scenarios (default: go build ./cmd/weft once)"),
		selfBin:    fs.String("self-bin", "", "binary that runs `bench upstream|load` subprocesses with -pin (default: this one)"),
		keep:       fs.Bool("keep", false, "keep the temp dir with configs and process logs, and print its path"),
		verbose:    fs.Bool("v", false, "log each process start"),
	}
}

// parse parses args, applies the quick-mode defaults and reports which
// flags were set.
func (f *runFlags) parse(args []string) (map[string]bool, error) {
	if err := f.fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if *f.quick {
		if !set["d"] {
			*f.duration = quickDuration
		}
		if !set["warmup"] {
			*f.warmup = quickWarmup
		}
		if !set["c"] {
			*f.conns = quickConnections
		}
	}
	return set, nil
}

// run runs the scenarios with the parsed flags, writes the report to -out
// and prints it.
func (f *runFlags) run(ctx context.Context, scenarios []Scenario, baseline string, stdout, stderr io.Writer) error {
	level := zap.InfoLevel
	if *f.verbose {
		level = zap.DebugLevel
	}
	logger := newLogger(stderr, level)
	defer func() { _ = logger.Sync() }()

	opts := Options{
		Scenarios: scenarios,
		Baseline:  baseline,
		Load: loadgen.Config{
			Connections: *f.conns, Rate: *f.rate, Warmup: *f.warmup, Duration: *f.duration,
			MaxRequests: *f.maxReq, Timeout: *f.timeout,
		},
		Upstream:   upstream.Config{BodySize: *f.bodySize, Delay: *f.delay},
		Quick:      *f.quick,
		Pin:        *f.pin,
		LoadCPUs:   *f.loadCPUs,
		ServerCPUs: *f.serverCPUs,
		WeftBin:    *f.weftBin,
		SelfBin:    *f.selfBin,
		Progress:   stderr,
		Logger:     logger,
	}
	if *f.keep {
		dir, err := os.MkdirTemp("", "weft-bench-")
		if err != nil {
			return fmt.Errorf("weft bench: %w", err)
		}
		opts.TempDir = dir
		defer fmt.Fprintf(stderr, "weft bench: configs and logs kept in %s\n", dir)
	}
	rep, runErr := Run(ctx, opts)
	if rep == nil {
		return runErr
	}
	paths, err := rep.WriteFiles(*f.out)
	if err != nil {
		return errors.Join(runErr, err)
	}
	if err := rep.Markdown(stdout); err != nil {
		return errors.Join(runErr, err)
	}
	abs, _ := filepath.Abs(*f.out)
	fmt.Fprintf(stdout, "\nWrote %d files to %s: %s\n", len(paths), abs, strings.Join(baseNames(paths), ", "))
	return runErr
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newRunFlags("weft bench", stderr)
	f.fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: weft bench [flags]\n       weft bench filter [flags] FILE.wasm\n       weft bench list | upstream [flags] | load [flags]\n       weft bench transfer [flags]   (1 GiB transfers, direct vs weft, each party its own process)\n\nRuns each scenario (see `weft bench list`) against the built-in upstream and writes\nreport.md, report.json and SVG charts to -out.\n\nflags:\n")
		f.fs.PrintDefaults()
	}
	scenarios := f.fs.String("scenarios", "", "comma-separated scenarios to run, or \"all\" (default: all; with -quick, the quick ones)")
	if _, err := f.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if f.fs.NArg() > 0 {
		return fmt.Errorf("weft bench: unexpected argument %q (see weft bench -h)", f.fs.Arg(0))
	}
	var selected []Scenario
	switch {
	case strings.TrimSpace(*scenarios) != "":
		var err error
		if selected, err = selectScenarios(*scenarios); err != nil {
			return err
		}
	case *f.quick:
		selected = QuickScenarios()
	default:
		selected = DefaultScenarios()
	}
	return f.run(ctx, selected, "direct", stdout, stderr)
}

// filterCommand is `weft bench filter [flags] FILE.wasm`: weft without and
// with the user's filter, in the same run, with the ratio.
func filterCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newRunFlags("weft bench filter", stderr)
	f.fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: weft bench filter [flags] FILE.wasm [flags]\n\nMeasures a Proxy-Wasm filter: runs `weft` (no filter) and `weft-filter` (the filter on the\nlistener) in the same run and reports both, with the ratios against weft.\n\nflags:\n")
		f.fs.PrintDefaults()
	}
	pluginConfig := f.fs.String("config", "", "the filter's configuration, passed to the guest as is (usually JSON)")
	rootID := f.fs.String("root-id", "", "the filter's root_id")
	trusted := f.fs.Bool("trusted", false, "run the filter trusted (no callback deadline)")
	// The module may come before or after the flags.
	var module string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		module, args = args[0], args[1:]
	}
	if _, err := f.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	rest := f.fs.Args()
	if module == "" && len(rest) > 0 {
		module, rest = rest[0], rest[1:]
	}
	if module == "" {
		return errors.New("weft bench filter: name the filter module: weft bench filter FILE.wasm [-config JSON]")
	}
	if len(rest) > 0 {
		return fmt.Errorf("weft bench filter: unexpected argument %q (flags go before or right after FILE.wasm)", rest[0])
	}
	if err := checkWasmFile(module); err != nil {
		return fmt.Errorf("weft bench filter: %w", err)
	}
	scenarios := []Scenario{Weft(), WeftFilter(module, *pluginConfig, *rootID, *trusted)}
	return f.run(ctx, scenarios, "weft", stdout, stderr)
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

// selectScenarios picks scenarios by comma-separated names ("all" for all).
func selectScenarios(list string) ([]Scenario, error) {
	all := DefaultScenarios()
	if strings.TrimSpace(list) == "all" {
		return all, nil
	}
	byName := map[string]Scenario{}
	var names []string
	for _, s := range append(all, OnDemandScenarios()...) {
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	var out []Scenario
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if group, ok := scenarioGroups[n]; ok {
			for _, g := range group {
				out = append(out, byName[g])
			}
			continue
		}
		s, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("weft bench: -scenarios: unknown scenario %q (have %s; groups %s)", n, strings.Join(names, ", "), strings.Join(groupNames(), ", "))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("weft bench: -scenarios: none selected")
	}
	return out, nil
}

func groupNames() []string {
	var out []string
	for n := range scenarioGroups {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func newLogger(w io.Writer, level zapcore.Level) *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = ""
	enc.CallerKey = ""
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), level)
	return zap.New(core)
}

// upstreamCommand is `weft bench upstream`: the built-in upstream as a
// process of its own, until interrupted.
func upstreamCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft bench upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg upstream.Config
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8081", "listen address")
	fs.IntVar(&cfg.BodySize, "body-size", upstream.DefaultBodySize, "response body bytes (a request may ask ?size=N)")
	fs.DurationVar(&cfg.Delay, "delay", 0, "delay before each response")
	fs.Float64Var(&cfg.FailRate, "fail-rate", 0, "share of requests answered 503 (0..1), spread evenly")
	fs.DurationVar(&cfg.StallAfter, "stall-after", 0, "with -stall-for: stall once, this long after the first request")
	fs.DurationVar(&cfg.StallFor, "stall-for", 0, "hold every request arriving during the stall window until it ends")
	fs.BoolVar(&cfg.StreamRequests, "stream-requests", false, "stream request bodies to the handler (POST /?sink reads a body of any length and answers its byte count)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	return upstream.Serve(ctx, cfg, func(addr string) {
		fmt.Fprintf(stdout, "weft bench upstream: listening on %s\n", addr)
	})
}

// refProxyCommand is `weft bench ref-proxy`: one of the reference proxies
// of the ref-* scenarios, until interrupted.
func refProxyCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft bench ref-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", "epoll", "epoll (a one-thread event loop in Go) or fasthttp (fasthttp's server and client, nothing else)")
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	up := fs.String("upstream", "", "upstream host:port")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	return refproxy.Serve(ctx, *kind, *listen, *up, func(a net.Addr) {
		fmt.Fprintf(stdout, "weft bench ref-proxy: %s listening on %s\n", *kind, a)
	})
}

// loadCommand is `weft bench load`: one load run, its Result as one JSON
// line on stdout, progress on stderr. With -markers it also prints the
// measure-window markers the harness samples CPU on.
func loadCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft bench load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.Config
	fs.StringVar(&cfg.Name, "name", "load", "label for progress lines")
	fs.StringVar(&cfg.URL, "url", "", "URL to load (http://127.0.0.1:PORT/)")
	fs.StringVar(&cfg.Method, "method", "GET", "HTTP method")
	fs.StringVar(&cfg.Protocol, "protocol", loadgen.HTTP1, "http1, http1-stream (bodies read as they come), h2c, grpc-unary (UnaryCall to the gRPC upstream) or grpc-stream (messages on one FullDuplexCall)")
	fs.IntVar(&cfg.Conns, "conns", loadgen.DefaultConns, "connections the -c requests in flight share with h2c and grpc-unary")
	fs.IntVar(&cfg.MessageSize, "message-size", upstream.DefaultBodySize, "gRPC payload bytes sent and asked back per call or message")
	fs.IntVar(&cfg.Connections, "c", 64, "connections (closed loop) or workers (open loop)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "requests per second (open loop); 0 for closed loop")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "warm-up, not measured")
	fs.DurationVar(&cfg.Duration, "d", 10*time.Second, "measured duration")
	fs.Int64Var(&cfg.MaxRequests, "n", 50_000_000, "at most this many measured requests")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.Func("H", "a request header `Name: value` (repeatable)", func(v string) error {
		h, err := loadgen.ParseHeader(v)
		if err != nil {
			return err
		}
		cfg.Headers = append(cfg.Headers, h)
		return nil
	})
	markers := fs.Bool("markers", false, "print measure-window markers on stdout (for the harness)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if cfg.URL == "" {
		return errors.New("weft bench load: -url is required")
	}
	cfg.Progress = stderr
	if *markers {
		// The generator's own CPU over the window, from getrusage: the
		// harness may read its markers after the process has exited, too
		// late for /proc.
		var cpu0 time.Duration
		cfg.OnMeasureStart = func() {
			cpu0 = selfCPU()
			fmt.Fprintln(stdout, markerMeasureStart)
		}
		cfg.OnMeasureEnd = func() {
			fmt.Fprintf(stdout, "%s %d\n", markerCPU, int64(selfCPU()-cpu0))
			fmt.Fprintln(stdout, markerMeasureEnd)
		}
	}
	res, err := runLoad(ctx, cfg)
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

// grpcUpstreamCommand is `weft bench grpc-upstream`: the gRPC upstream
// (bench/grpcupstream) as a process of its own, until interrupted.
func grpcUpstreamCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft bench grpc-upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8082", "listen address")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	return grpcupstream.Serve(ctx, *addr, func(addr string) {
		fmt.Fprintf(stdout, "weft bench grpc-upstream: listening on %s\n", addr)
	})
}
