package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
)

// Applier applies a validated config; on error nothing may change. The
// proxy (*proxy.Proxy) is one.
type Applier interface {
	Apply(ctx context.Context, cfg *config.Config, raw []byte, path string) error
}

// Defaults for Options.
const (
	DefaultWait       = 30 * time.Second
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 15 * time.Second
)

// Options configure Run.
type Options struct {
	// URL is the control plane's base URL (https://host:port), or the
	// base URLs of several replicas separated by commas. The client
	// watches one replica at a time and fails over to the next when it
	// stops answering; a host name resolving to several addresses counts
	// as one replica per address.
	URL string
	// TLS is the client config for an https URL: the mesh CA and the
	// node's certificate (TLSConfig makes it). The control plane answers a
	// watch or ACK only to the node's own certificate.
	TLS *tls.Config
	// ModuleDir keeps modules fetched from the control plane (default
	// CacheDir/modules, else a directory under the system's temp dir).
	ModuleDir string
	// NodeID is this sidecar's node id (its Sidecar resource's name).
	NodeID string
	// CacheDir keeps the last applied snapshot ("" = no cache).
	CacheDir string
	Applier  Applier
	Logger   *zap.Logger
	// AdminAddr is reported to the control plane, which scrapes its
	// /stats/prometheus for the mesh-wide telemetry ("" = not scraped).
	AdminAddr string
	// AdminAddrFunc, when set, is asked before every watch instead of
	// AdminAddr (a sidecar whose admin listener starts with its first
	// snapshot).
	AdminAddrFunc func() string
	// Wait is how long one watch request may wait for a change.
	Wait time.Duration
	// MinBackoff and MaxBackoff bound the delay between failed attempts.
	MinBackoff, MaxBackoff time.Duration
	// LookupHost resolves a replica's host name into its addresses
	// (default net.DefaultResolver.LookupHost), again after every round in
	// which no replica answered.
	LookupHost func(ctx context.Context, host string) ([]string, error)
}

// Snapshot is what the control plane sends and what the cache file holds.
type Snapshot struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	Config  string `json:"config"`
	// Format is "json" for a Config in JSON, read with the faster
	// config.ParseJSON; otherwise Config is YAML.
	Format string `json:"format,omitempty"`
}

type ack struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	Error   string `json:"error,omitempty"`
}

type runner struct {
	o   Options
	log *zap.Logger
	// eps are the replicas; the one in use answers watches, ACKs and
	// module downloads.
	eps *replicas
	// have is the last version received (applied or refused): the watch
	// asks for anything else, so a refused snapshot is not resent in a loop.
	have string
	// applied is the version in force (last applied), reported with every
	// watch so a restarted control plane knows it at once.
	applied string
	pending *ack // an ACK/NACK not yet delivered
	// parser decodes of each JSON snapshot only what differs from the
	// one before.
	parser config.DeltaParser
}

// Run keeps the sidecar in sync with the control plane until ctx ends, then
// returns nil. It returns an error at once only for bad Options.
func Run(ctx context.Context, o Options) error {
	if o.URL == "" || o.NodeID == "" || o.Applier == nil {
		return errors.New("control client: URL, NodeID and Applier are required")
	}
	urls, err := SplitURLs(o.URL)
	if err != nil {
		return fmt.Errorf("control client: URL: %w", err)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Wait <= 0 {
		o.Wait = DefaultWait
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.ModuleDir == "" {
		o.ModuleDir = filepath.Join(os.TempDir(), "weft-modules")
		if o.CacheDir != "" {
			o.ModuleDir = filepath.Join(o.CacheDir, "modules")
		}
	}
	r := &runner{o: o, log: o.Logger.With(zap.String("node", o.NodeID)), eps: newReplicas(urls, o.TLS)}
	if o.LookupHost != nil {
		r.eps.lookup = o.LookupHost
	}
	defer r.eps.close()
	r.eps.resolve(ctx)
	r.loop(ctx)
	return nil
}

// loop watches the replica in use. A failed watch moves to the next
// replica at once; only when every replica failed in turn (a round) does
// it back off, re-resolve the addresses and start the next round.
func (r *runner) loop(ctx context.Context) {
	reached := false // the control plane has answered since boot
	rounds := 0      // whole rounds failed in a row
	missed := 0      // replicas failed in this round
	for ctx.Err() == nil {
		r.flushAck(ctx)
		ep := r.eps.current()
		snap, err := r.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			missed++
			if missed < len(r.eps.list) {
				r.log.Warn("control plane replica unreachable; trying the next one", zap.String("replica", ep.String()), zap.Error(err))
				r.eps.next()
				continue
			}
			if !reached && rounds == 0 {
				r.bootFromCache(ctx)
			}
			d := backoff(rounds, r.o.MinBackoff, r.o.MaxBackoff)
			rounds++
			missed = 0
			r.log.Warn("control plane unreachable; the config in force keeps serving", zap.String("replica", ep.String()), zap.Error(err), zap.Int("attempt", rounds), zap.Duration("retry_in", d))
			if !sleep(ctx, d) {
				return
			}
			r.eps.next()
			r.eps.resolve(ctx)
			continue
		}
		if rounds > 0 || missed > 0 {
			r.log.Info("control plane reachable", zap.String("replica", ep.String()), zap.Int("after_rounds", rounds), zap.Int("replicas_missed", missed))
		}
		rounds, missed = 0, 0
		reached = true
		if snap != nil {
			r.apply(ctx, snap, true)
		}
	}
}

// backoff is the delay before attempt n+1: min·2ⁿ capped at max, with
// "equal jitter" (half fixed, half random) so a fleet does not reconnect
// in step after a control plane restart.
func backoff(n int, minD, maxD time.Duration) time.Duration {
	d := minD
	for i := 0; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	half := d / 2
	return half + rand.N(half+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// poll is one watch request: a snapshot, nil when nothing changed within
// the wait, or an error.
func (r *runner) poll(ctx context.Context) (*Snapshot, error) {
	q := url.Values{"node": {r.o.NodeID}, "version": {r.have}, "wait": {r.o.Wait.String()}}
	if r.applied != "" {
		q.Set("applied", r.applied)
	}
	admin := r.o.AdminAddr
	if r.o.AdminAddrFunc != nil {
		admin = r.o.AdminAddrFunc()
	}
	if admin != "" {
		q.Set("admin", admin)
	}
	ctx, cancel := context.WithTimeout(ctx, r.o.Wait+10*time.Second)
	defer cancel()
	ep := r.eps.current()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.base+"/v1/watch?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	// The config itself as the body, not quoted in a WatchResponse: a
	// control plane that does not know this answers a WatchResponse.
	req.Header.Set("Accept", ConfigMediaType+", application/json")
	resp, err := ep.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return nil, nil
	case http.StatusOK:
		if resp.Header.Get("Content-Type") == ConfigMediaType {
			return readConfigAnswer(resp)
		}
		var s Snapshot
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&s); err != nil {
			return nil, fmt.Errorf("watch: decoding snapshot: %w", err)
		}
		if s.Version == "" {
			return nil, errors.New("watch: snapshot without a version")
		}
		return &s, nil
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusUnauthorized {
			// Not authenticated (no node certificate yet, or an expired
			// one): the next attempt dials again and presents the current
			// certificate.
			ep.hc.CloseIdleConnections()
		}
		return nil, fmt.Errorf("watch: status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
}

// ConfigMediaType asks the watch for the config itself as the answer's
// body (server.ConfigMediaType: the two packages do not import each other).
const ConfigMediaType = "application/vnd.weft.config+json"

// readConfigAnswer reads a watch answer whose body is the config itself.
func readConfigAnswer(resp *http.Response) (*Snapshot, error) {
	var b []byte
	var err error
	if n := resp.ContentLength; n > 0 && n <= 64<<20 {
		// One buffer of the announced size (net/http checks the body
		// is exactly that long).
		b = make([]byte, n)
		_, err = io.ReadFull(resp.Body, b)
	} else {
		b, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	}
	if err != nil {
		return nil, fmt.Errorf("watch: reading snapshot: %w", err)
	}
	s := &Snapshot{Node: resp.Header.Get("X-Weft-Node"), Version: resp.Header.Get("X-Weft-Version"), Config: string(b), Format: "json"}
	if s.Version == "" {
		return nil, errors.New("watch: snapshot without a version (no X-Weft-Version)")
	}
	return s, nil
}

// apply parses and applies a snapshot, then queues the ACK or NACK; a
// snapshot from the control plane (not the cache) is saved when applied.
func (r *runner) apply(ctx context.Context, s *Snapshot, save bool) bool {
	r.have = s.Version
	raw := []byte(s.Config)
	name := fmt.Sprintf("control snapshot %s@%s", r.o.NodeID, s.Version)
	var cfg *config.Config
	var err error
	if s.Format == "json" {
		cfg, err = r.parser.Parse(name, raw)
		if err == nil {
			// The parser keeps it as parsed: what follows changes a copy.
			c := *cfg
			cfg = &c
		}
	} else {
		cfg, err = config.Parse(name, raw)
	}
	if err == nil {
		err = localizeModules(ctx, r.eps.current().hc, r.eps.moduleURL, r.o.ModuleDir, cfg)
	}
	if err == nil {
		err = r.o.Applier.Apply(ctx, cfg, raw, "")
	}
	if err != nil {
		r.log.Error("snapshot refused (NACK); the config in force keeps serving", zap.String("version", s.Version), zap.Error(err))
		r.pending = &ack{Node: r.o.NodeID, Version: s.Version, Error: err.Error()}
		return false
	}
	r.log.Info("snapshot applied", zap.String("version", s.Version))
	r.applied = s.Version
	// The ACK rides on the next watch, sent at once (applied=VERSION):
	// one request fewer per change than a POST /v1/ack first. A NACK
	// queued for an earlier version is superseded.
	r.pending = nil
	if save {
		if err := r.saveCache(s); err != nil {
			r.log.Warn("could not save the snapshot cache", zap.Error(err))
		}
	}
	return true
}

// flushAck delivers a queued ACK/NACK; on failure it stays queued.
func (r *runner) flushAck(ctx context.Context) {
	if r.pending == nil {
		return
	}
	b, _ := json.Marshal(r.pending)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ep := r.eps.current()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.base+"/v1/ack", bytes.NewReader(b))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := ep.hc.Do(req)
	if err != nil {
		r.log.Debug("ack not delivered; will retry", zap.Error(err))
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		r.pending = nil
	}
}

func (r *runner) cachePath() string {
	return filepath.Join(r.o.CacheDir, r.o.NodeID+".snapshot.json")
}

func (r *runner) saveCache(s *Snapshot) error {
	if r.o.CacheDir == "" {
		return nil
	}
	if err := os.MkdirAll(r.o.CacheDir, 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	p := r.cachePath()
	tmp, err := os.CreateTemp(r.o.CacheDir, "."+filepath.Base(p)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// bootFromCache applies the saved snapshot, if any.
func (r *runner) bootFromCache(ctx context.Context) {
	if r.o.CacheDir == "" {
		return
	}
	b, err := os.ReadFile(r.cachePath())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("cannot read the snapshot cache", zap.Error(err))
		}
		return
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil || s.Node != r.o.NodeID || s.Version == "" {
		r.log.Warn("ignoring a bad snapshot cache", zap.String("path", r.cachePath()), zap.Error(err))
		return
	}
	if r.apply(ctx, &s, false) {
		r.log.Info("control plane unreachable at boot: serving the cached snapshot", zap.String("version", s.Version))
	}
}
