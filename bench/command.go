package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/weftmesh/weft/bench/loadgen"
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
//	weft bench [flags]            run scenarios and write the report
//	weft bench list               list the scenarios
//	weft bench upstream [flags]   run the built-in upstream until interrupted
//	weft bench load [flags]       run the load generator once, print JSON
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
		case "list":
			for _, s := range DefaultScenarios() {
				fmt.Fprintf(stdout, "%-10s %s\n", s.Name, s.Description)
			}
			return nil
		}
	}
	return runCommand(ctx, args, stdout, stderr)
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("weft bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: weft bench [flags]\n       weft bench list | upstream [flags] | load [flags]\n\nRuns each scenario (see `weft bench list`) against the built-in upstream and writes\nreport.md, report.json and SVG charts to -out.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var names []string
	for _, s := range DefaultScenarios() {
		names = append(names, s.Name)
	}
	scenarios := fs.String("scenarios", strings.Join(names, ","), "comma-separated scenarios to run")
	duration := fs.Duration("d", 10*time.Second, "measured duration per scenario")
	warmup := fs.Duration("warmup", 2*time.Second, "warm-up per scenario, not measured")
	conns := fs.Int("c", 64, "connections (closed loop) or workers (open loop)")
	rate := fs.Float64("rate", 0, "requests per second: open loop, latency from the intended send time (0: closed loop)")
	maxReq := fs.Int64("n", 50_000_000, "at most this many measured requests per scenario")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	bodySize := fs.Int("body-size", upstream.DefaultBodySize, "upstream response body bytes")
	delay := fs.Duration("delay", 0, "upstream delay per response")
	out := fs.String("out", "bench-out", "directory for report.md, report.json and the SVG charts")
	quick := fs.Bool("quick", false, "CI mode: 2 s per scenario, fails only if the harness does not work (no answers, errors); never judges speed")
	pin := fs.Bool("pin", false, "pin the load generator to -load-cpus and upstream+proxy to -server-cpus (taskset; generator and upstream run as subprocesses)")
	loadCPUs := fs.String("load-cpus", "0", "CPU list for the load generator with -pin")
	serverCPUs := fs.String("server-cpus", "1", "CPU list for the upstream and proxy with -pin")
	weftBin := fs.String("weft-bin", "", "weft binary for the weft scenarios (default: go build ./cmd/weft once)")
	selfBin := fs.String("self-bin", "", "binary that runs `bench upstream|load` subprocesses with -pin (default: this one)")
	keep := fs.Bool("keep", false, "keep the temp dir with configs and process logs, and print its path")
	verbose := fs.Bool("v", false, "log each process start")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("weft bench: unexpected argument %q (see weft bench -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["d"] {
			*duration = quickDuration
		}
		if !set["warmup"] {
			*warmup = quickWarmup
		}
		if !set["c"] {
			*conns = quickConnections
		}
	}

	selected, err := selectScenarios(*scenarios)
	if err != nil {
		return err
	}
	level := zap.InfoLevel
	if *verbose {
		level = zap.DebugLevel
	}
	logger := newLogger(stderr, level)
	defer func() { _ = logger.Sync() }()

	opts := Options{
		Scenarios: selected,
		Load: loadgen.Config{
			Connections: *conns, Rate: *rate, Warmup: *warmup, Duration: *duration,
			MaxRequests: *maxReq, Timeout: *timeout,
		},
		Upstream:   upstream.Config{BodySize: *bodySize, Delay: *delay},
		Quick:      *quick,
		Pin:        *pin,
		LoadCPUs:   *loadCPUs,
		ServerCPUs: *serverCPUs,
		WeftBin:    *weftBin,
		SelfBin:    *selfBin,
		Progress:   stderr,
		Logger:     logger,
	}
	if *keep {
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
	paths, err := rep.WriteFiles(*out)
	if err != nil {
		return errors.Join(runErr, err)
	}
	if err := rep.Markdown(stdout); err != nil {
		return errors.Join(runErr, err)
	}
	abs, _ := filepath.Abs(*out)
	fmt.Fprintf(stdout, "\nWrote %d files to %s: %s\n", len(paths), abs, strings.Join(baseNames(paths), ", "))
	return runErr
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
	for _, s := range all {
		byName[s.Name] = s
		names = append(names, s.Name)
	}
	var out []Scenario
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		s, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("weft bench: -scenarios: unknown scenario %q (have %s)", n, strings.Join(names, ", "))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("weft bench: -scenarios: none selected")
	}
	return out, nil
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
	fs.IntVar(&cfg.Connections, "c", 64, "connections (closed loop) or workers (open loop)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "requests per second (open loop); 0 for closed loop")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "warm-up, not measured")
	fs.DurationVar(&cfg.Duration, "d", 10*time.Second, "measured duration")
	fs.Int64Var(&cfg.MaxRequests, "n", 50_000_000, "at most this many measured requests")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "per-request timeout")
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
		cfg.OnMeasureStart = func() { fmt.Fprintln(stdout, markerMeasureStart) }
		cfg.OnMeasureEnd = func() { fmt.Fprintln(stdout, markerMeasureEnd) }
	}
	res, err := loadgen.Run(ctx, cfg)
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
