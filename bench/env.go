package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/weftmesh/weft/bench/grpcupstream"
	"github.com/weftmesh/weft/bench/loadgen"
	"github.com/weftmesh/weft/bench/proc"
	"github.com/weftmesh/weft/bench/upstream"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/loopback"
)

// stopGrace is how long a stopped process may take before SIGKILL.
const stopGrace = 5 * time.Second

// readyTimeout bounds waiting for a started server to answer.
const readyTimeout = 20 * time.Second

// Env is what a scenario's Setup works with: its own temp directory, and
// helpers that start upstreams and processes so that the harness can pin,
// measure and stop them.
type Env struct {
	// Dir is the scenario's own directory for configs and logs.
	Dir string
	// Logger logs setup steps (never per request).
	Logger *zap.Logger

	name     string
	r        *runner
	procs    []*proc.Process
	measured []*proc.Process
	// upstreams are the upstream processes whose CPU is reported beside
	// the proxy's (pinned runs only: otherwise upstreams run in-process).
	upstreams []*proc.Process
	closers   []func() error
	headers   []loadgen.Header
}

// AddLoadHeader makes the load generator send a header with every request
// of this scenario (a bearer token for an auth filter).
func (e *Env) AddLoadHeader(name, value string) {
	e.headers = append(e.headers, loadgen.Header{Name: name, Value: value})
}

// UpstreamConfig is the run's upstream settings (body size, delay); a
// scenario may change a copy (e.g. a FailRate for a flaky upstream).
func (e *Env) UpstreamConfig() upstream.Config { return e.r.opts.Upstream }

// Pinned reports whether servers are pinned (to ServerCPUs).
func (e *Env) Pinned() bool { return e.r.opts.Pin }

// StartUpstream starts a built-in upstream and returns its host:port. When
// pinning, it runs as a `weft bench upstream` subprocess on the server CPUs;
// otherwise in-process. Either way it is not measured as the proxy (when
// pinned its own CPU is reported as the upstream's) and is stopped after
// the run.
func (e *Env) StartUpstream(ctx context.Context, cfg upstream.Config) (string, error) {
	if !e.r.opts.Pin {
		s, err := upstream.Start(cfg)
		if err != nil {
			return "", fmt.Errorf("scenario %q: %w", e.name, err)
		}
		e.Cleanup(s.Close)
		return s.Addr(), nil
	}
	addr, err := FreeAddr()
	if err != nil {
		return "", err
	}
	args := append(e.r.selfArgs("upstream"), upstreamFlags(addr, cfg)...)
	p, err := e.startProcess(procSpec{name: "upstream", path: e.r.opts.SelfBin, args: args}, false)
	if err != nil {
		return "", err
	}
	if err := e.WaitHTTP(ctx, "http://"+addr+"/", p, nil); err != nil {
		return "", err
	}
	e.upstreams = append(e.upstreams, p)
	return addr, nil
}

// StartUpstreamProcess starts a built-in upstream as its own process
// (`weft bench upstream`, pinned to the server CPUs when pinning), so that
// a fault scenario can kill it; it returns the process and its host:port.
// It is not measured, and is stopped after the run.
func (e *Env) StartUpstreamProcess(ctx context.Context, name string, cfg upstream.Config) (*proc.Process, string, error) {
	bin, err := e.r.selfBinary(ctx)
	if err != nil {
		return nil, "", err
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, "", err
	}
	args := append(e.r.selfArgs("upstream"), upstreamFlags(addr, cfg)...)
	p, err := e.startProcess(procSpec{name: name, path: bin, args: args}, false)
	if err != nil {
		return nil, "", err
	}
	if err := e.WaitHTTP(ctx, "http://"+addr+"/", p, nil); err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

// StartGRPCUpstream starts the gRPC upstream (bench/grpcupstream) and
// returns its host:port once its health service answers; in-process, or
// as a pinned `weft bench grpc-upstream` subprocess when pinning. Not
// measured as the proxy; when pinned its own CPU is reported as the
// upstream's. Stopped after the run.
func (e *Env) StartGRPCUpstream(ctx context.Context) (string, error) {
	if !e.r.opts.Pin {
		s, err := grpcupstream.Start("")
		if err != nil {
			return "", fmt.Errorf("scenario %q: %w", e.name, err)
		}
		e.Cleanup(s.Close)
		return s.Addr(), nil
	}
	addr, err := FreeAddr()
	if err != nil {
		return "", err
	}
	args := append(e.r.selfArgs("grpc-upstream"), "-addr", addr)
	p, err := e.startProcess(procSpec{name: "grpc-upstream", path: e.r.opts.SelfBin, args: args}, false)
	if err != nil {
		return "", err
	}
	if err := e.WaitGRPC(ctx, addr, p); err != nil {
		return "", err
	}
	e.upstreams = append(e.upstreams, p)
	return addr, nil
}

// WaitGRPC waits until the gRPC health service at addr (an upstream, or a
// proxy in front of one) answers SERVING; it fails early when p (if set)
// exits, and after 20 s.
func (e *Env) WaitGRPC(ctx context.Context, addr string, p *proc.Process) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	name := "grpc"
	if p != nil {
		name = p.Name()
		go func() {
			select {
			case <-p.Exited():
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	if err := grpcupstream.WaitReady(ctx, addr, readyTimeout); err != nil {
		if p != nil {
			select {
			case <-p.Exited():
				return fmt.Errorf("scenario %q: %s exited before %s answered (%v); its log:\n%s",
					e.name, name, addr, p.ExitErr(), e.LogTail(name, 20))
			default:
			}
		}
		return fmt.Errorf("scenario %q: %s: %w; log:\n%s", e.name, name, err, e.LogTail(name, 20))
	}
	return nil
}

// upstreamFlags are the `weft bench upstream` flags for cfg.
func upstreamFlags(addr string, cfg upstream.Config) []string {
	return []string{
		"-addr", addr,
		"-body-size", strconv.Itoa(cfg.BodySize),
		"-delay", cfg.Delay.String(),
		"-fail-rate", strconv.FormatFloat(cfg.FailRate, 'g', -1, 64),
		"-stall-after", cfg.StallAfter.String(),
		"-stall-for", cfg.StallFor.String(),
		"-stream-requests=" + strconv.FormatBool(cfg.StreamRequests),
	}
}

// StartProcess starts a server the scenario benchmarks (a proxy, a peer)
// with its output in Dir/NAME.log, pinned to the server CPUs when pinning.
// Its process group's CPU and peak RSS are reported for the scenario.
func (e *Env) StartProcess(name, path string, args ...string) (*proc.Process, error) {
	return e.startProcess(procSpec{name: name, path: path, args: args}, true)
}

// StartProcessEnv is StartProcess with extra environment variables.
func (e *Env) StartProcessEnv(name string, env []string, path string, args ...string) (*proc.Process, error) {
	return e.startProcess(procSpec{name: name, path: path, args: args, env: env}, true)
}

type procSpec struct {
	name, path string
	args, env  []string
}

func (e *Env) startProcess(s procSpec, measure bool) (*proc.Process, error) {
	logPath := filepath.Join(e.Dir, s.name+".log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("scenario %q: %s: %w", e.name, s.name, err)
	}
	spec := proc.Spec{Name: s.name, Path: s.path, Args: s.args, Env: s.env, Dir: e.Dir, Stdout: log, Stderr: log}
	if e.r.opts.Pin {
		spec.CPUs = e.r.opts.ServerCPUs
	}
	p, err := proc.Start(spec)
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("scenario %q: %w", e.name, err)
	}
	e.Logger.Debug("started", zap.String("process", s.name), zap.Int("pid", p.PID()), zap.Strings("args", s.args))
	if e.r.opts.trace != nil {
		e.r.opts.trace(s.name, p.PID())
	}
	e.procs = append(e.procs, p)
	if measure {
		e.measured = append(e.measured, p)
	}
	e.Cleanup(log.Close)
	return p, nil
}

// Cleanup registers f to run when the scenario ends, after its processes
// are stopped, in reverse order of registration.
func (e *Env) Cleanup(f func() error) { e.closers = append(e.closers, f) }

// close stops every process (last started first), then runs the cleanups.
func (e *Env) close() error {
	var errs []error
	for i := len(e.procs) - 1; i >= 0; i-- {
		if err := e.procs[i].Stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	e.procs = nil
	for i := len(e.closers) - 1; i >= 0; i-- {
		if err := e.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	e.closers = nil
	return errors.Join(errs...)
}

// LogTail returns the last lines of a process's log in Dir, for errors.
func (e *Env) LogTail(name string, lines int) string {
	b, err := os.ReadFile(filepath.Join(e.Dir, name+".log"))
	if err != nil {
		return ""
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// WriteFile writes a file into Dir and returns its path.
func (e *Env) WriteFile(name string, data []byte) (string, error) {
	path := filepath.Join(e.Dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("scenario %q: %w", e.name, err)
	}
	return path, nil
}

// WaitHTTP polls url until it answers with a status ok accepts (any status
// below 500 when ok is nil). It fails early when p (if set) exits, and after
// 20 s.
func (e *Env) WaitHTTP(ctx context.Context, url string, p *proc.Process, ok func(status int) bool) error {
	if ok == nil {
		ok = func(s int) bool { return s < 500 }
	}
	deadline := time.Now().Add(readyTimeout)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.SetConnectionClose()
	var lastErr error
	for {
		err := fasthttp.DoTimeout(req, resp, time.Second)
		if err == nil && ok(resp.StatusCode()) {
			if p != nil {
				select {
				case <-p.Exited():
					// Somebody else's server on that port answered.
					return fmt.Errorf("scenario %q: %s exited (%v) but %s answered: another process holds the port; its log:\n%s",
						e.name, p.Name(), p.ExitErr(), url, e.LogTail(p.Name(), 20))
				default:
				}
			}
			return nil
		}
		if err == nil {
			lastErr = fmt.Errorf("status %d", resp.StatusCode())
		} else {
			lastErr = err
		}
		name := ""
		if p != nil {
			name = p.Name()
			select {
			case <-p.Exited():
				return fmt.Errorf("scenario %q: %s exited before %s answered (%v); its log:\n%s",
					e.name, name, url, p.ExitErr(), e.LogTail(name, 20))
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("scenario %q: %s did not answer %s within %s: %v; log:\n%s",
				e.name, name, url, readyTimeout, lastErr, e.LogTail(name, 20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("scenario %q: waiting for %s: %w", e.name, url, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// server that must be told its address (a proxy's listener). The port is
// below the kernel's ephemeral range (loopback.FreeAddr): from 127.0.0.1:0,
// another process's bind could take it before the proxy binds it, and the
// harness's readiness probe would then be answered by that process.
func FreeAddr() (string, error) { return loopback.FreeAddr() }

// WeftConfig is the simplest proxy config: one listener on listen routing
// everything to cluster "up" at upstreamAddr, with the admin server on
// admin. Scenarios add filters, TLS or retries to it.
func WeftConfig(listen, admin, upstreamAddr string) *config.Config {
	return &config.Config{
		Admin: config.Admin{Address: admin},
		Listeners: []config.Listener{{
			Name:    "bench",
			Address: listen,
			VirtualHosts: []config.VirtualHost{{
				Name:    "all",
				Domains: []string{"*"},
				Routes: []config.Route{{
					Match: config.Match{Prefix: "/"},
					Route: &config.RouteAction{Cluster: "up"},
				}},
			}},
		}},
		Clusters: []config.Cluster{{Name: "up", Endpoints: []config.Endpoint{{Address: upstreamAddr}}}},
	}
}

// startWeftFor starts `weft proxy` ("weft") with WeftConfig in front of
// the upstream at up, after edit (if set) changed the config, and returns
// the listener's address and the process.
func (e *Env) startWeftFor(ctx context.Context, up string, edit func(*config.Config)) (string, *proc.Process, error) {
	listen, err := FreeAddr()
	if err != nil {
		return "", nil, err
	}
	admin, err := FreeAddr()
	if err != nil {
		return "", nil, err
	}
	cfg := WeftConfig(listen, admin, up)
	if edit != nil {
		edit(cfg)
	}
	p, err := e.StartWeft(ctx, "weft", cfg)
	if err != nil {
		return "", nil, err
	}
	return listen, p, nil
}

// addFilters puts n filters on cfg's listener, filter(i) the i-th.
func addFilters(cfg *config.Config, n int, filter func(i int) config.Filter) {
	for i := 0; i < n; i++ {
		f := filter(i)
		cfg.Filters = append(cfg.Filters, f)
		cfg.Listeners[0].Filters = append(cfg.Listeners[0].Filters, f.Name)
	}
}

// StartWeft writes cfg to Dir/NAME.yaml, checks it with config.Parse, runs
// `weft proxy -c FILE` and waits for the admin server's /ready. The
// process is measured like any StartProcess.
func (e *Env) StartWeft(ctx context.Context, name string, cfg *config.Config) (*proc.Process, error) {
	bin, err := e.r.weftBinary(ctx)
	if err != nil {
		return nil, err
	}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("scenario %q: %s config: %w", e.name, name, err)
	}
	path, err := e.WriteFile(name+".yaml", data)
	if err != nil {
		return nil, err
	}
	if _, err := config.Parse(path, data); err != nil {
		return nil, fmt.Errorf("scenario %q: %s config is not valid: %w", e.name, name, err)
	}
	if cfg.Admin.Address == "" || cfg.Admin.Address == "off" {
		return nil, fmt.Errorf("scenario %q: %s config: set admin.address, the harness polls its /ready", e.name, name)
	}
	p, err := e.StartProcess(name, bin, "proxy", "-c", path)
	if err != nil {
		return nil, err
	}
	ready := func(s int) bool { return s == fasthttp.StatusOK }
	if err := e.WaitHTTP(ctx, "http://"+cfg.Admin.Address+"/ready", p, ready); err != nil {
		return nil, err
	}
	return p, nil
}

// hasGoFiles reports whether a directory listing holds a .go file.
func hasGoFiles(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".go") && !strings.HasSuffix(e.Name(), "_test.go") {
			return true
		}
	}
	return false
}

// moduleRoot finds the weft module's root from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/weftmesh/weft\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the weft source tree (no go.mod of github.com/weftmesh/weft above the working directory)")
		}
		dir = parent
	}
}
