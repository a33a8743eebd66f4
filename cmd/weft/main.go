// Command weft is the Weft service-mesh sidecar, its tools and its demo.
// This file only parses flags and wires packages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/weftmesh/weft/bench"
	"github.com/weftmesh/weft/control"
	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/ctl"
	"github.com/weftmesh/weft/examples/demo"
	"github.com/weftmesh/weft/proxy"
	"github.com/weftmesh/weft/proxy/admin"
	"github.com/weftmesh/weft/proxy/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `weft — a WebAssembly-programmable service-mesh sidecar

Usage:
  weft proxy -c FILE        run the sidecar from a YAML config (hot reloaded)
  weft proxy --control URL --node ID --control-ca ca.pem --join-token-file F
                            run the sidecar from the control plane's snapshots
  weft control -data DIR    run the control plane (file- and API-driven)
  weft ctl ...              operate the control plane (apply, get, status, set-weight, ...)
  weft filter run|test F    run or test a Wasm filter on its own
  weft filter push|pull|sign|verify|keygen
                            Wasm modules in OCI registries, signed in cosign's format
  weft validate FILE...     check sidecar configs and mesh resource files; exit 1 with file:line errors
  weft demo [--for 30s]     run a mesh on loopback: sidecars, plugins, control plane, a live canary shift
  weft bench [flags]        benchmark the proxy against the direct path and peers
  weft bench filter F.wasm  what your own filter costs, against the same proxy without it
  weft version              print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "proxy":
		err = runProxy(ctx, os.Args[2:])
	case "validate":
		err = runValidate(os.Args[2:], os.Stdout, os.Stderr)
	case "demo":
		err = runDemo(ctx, os.Args[2:])
	case "bench":
		err = bench.Command(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "control":
		err = control.Command(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "ctl":
		err = ctl.Command(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "filter":
		err = runFilter(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case "version", "--version", "-v":
		fmt.Println("weft", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "weft: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0) // -h/--help printed the usage
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft:", err)
		os.Exit(1)
	}
}

func newLogger(level string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return cfg.Build()
}

func runProxy(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	file := fs.String("c", "", "config file (YAML); watched and hot reloaded")
	controlURL := fs.String("control", "", "control plane URL, or several replicas' URLs separated by commas (failed over in order): take config snapshots from it instead of -c")
	nodeID := fs.String("node", "", "this sidecar's node id (with --control)")
	snapDir := fs.String("snapshot-cache", defaultSnapshotDir(), "where the last good snapshot is kept (with --control)")
	adminAddr := fs.String("admin", "", "admin address (overrides the config's admin.address, or with --control the Sidecar resource's admin; \"off\" disables)")
	cacheDir := fs.String("wasm-cache", defaultCacheDir(), "directory for compiled Wasm modules (\"\" = memory only)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	drain := fs.Duration("drain", 30*time.Second, "how long shutdown waits for in-flight requests")
	controlCA := fs.String("control-ca", "", "the control plane's CA bundle (its DATA/ca.pem): its API's certificate must chain to it (with an https --control)")
	joinToken := fs.String("join-token", "", "this node's join token, spent on its first certificate (with --control; prefer --join-token-file)")
	joinTokenFile := fs.String("join-token-file", "", "read the join token from this file")
	bundlePoll := fs.Duration("bundle-poll", 30*time.Second, "how often the trust bundle is polled (with a join token)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*file == "") == (*controlURL == "") {
		return errors.New("proxy: give -c FILE or --control URL --node ID")
	}
	if *controlURL != "" && *nodeID == "" {
		return errors.New("proxy: --control needs --node ID")
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	identityCtx, stopIdentity := context.WithCancel(ctx)
	defer stopIdentity()
	ident, err := meshIdentity(identityCtx, *controlURL, *nodeID, *controlCA, *joinToken, *joinTokenFile, *bundlePoll, log)
	if err != nil {
		return err
	}
	p, err := proxy.New(ctx, proxy.Options{Logger: log, WasmCacheDir: *cacheDir, DrainTimeout: *drain, Identity: ident.src})
	if err != nil {
		return err
	}
	if *file != "" {
		if err := p.LoadFile(ctx, *file); err != nil {
			return err
		}
	}
	addr := *adminAddr
	if addr == "" && *file != "" {
		if cfg, err := config.Load(*file); err == nil {
			addr = cfg.Admin.Address
		}
	}
	adminBound := ""
	var lazy *adminOnApply
	if addr == "" && *controlURL != "" {
		// From the snapshot: the Sidecar resource's admin address.
		lazy = &adminOnApply{Proxy: p, log: log}
		defer lazy.Close()
	} else if addr != "off" {
		a, err := admin.Start(addr, p, p.Metrics().Registry(), log)
		if err != nil {
			return err
		}
		defer a.Close(context.Background()) //nolint:errcheck
		adminBound = a.Addr().String()
		log.Info("admin listening", zap.String("address", adminBound))
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	clientDone := make(chan error, 1)
	if *file != "" {
		if err := p.WatchFile(runCtx, *file, 0); err != nil {
			return err
		}
	} else {
		o := client.Options{URL: *controlURL, NodeID: *nodeID, TLS: ident.tls,
			CacheDir: *snapDir, Applier: p, Logger: log, AdminAddr: adminBound}
		if lazy != nil {
			o.Applier, o.AdminAddrFunc = lazy, lazy.Addr
		}
		go func() { clientDone <- client.Run(runCtx, o) }()
	}
	select {
	case <-ctx.Done():
	case err := <-p.Errors():
		log.Error("listener failed", zap.Error(err))
	case err := <-clientDone:
		if err != nil {
			log.Error("control plane client stopped", zap.Error(err))
		}
	}
	cancel()
	log.Info("shutting down: draining in-flight requests", zap.Duration("within", *drain))
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	return p.Shutdown(sctx)
}

func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dur := fs.Duration("for", 0, "stop after this long (0: until Ctrl-C)")
	port := fs.Int("port", 10000, "first of five ports on 127.0.0.1: sidecar, its admin, the control plane, a second sidecar, its admin (0: free ports)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	if *dur > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *dur)
		defer cancel()
	}
	return demo.Run(ctx, demo.Options{Port: *port, Logger: log, Out: os.Stdout})
}

func defaultSnapshotDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "weft", "snapshots")
	}
	return ""
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "weft", "wasm")
	}
	return ""
}
