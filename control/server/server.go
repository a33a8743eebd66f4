package server

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/filesource"
	"github.com/weftmesh/weft/control/kube"
	"github.com/weftmesh/weft/control/kube/inject"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/registry"
	"github.com/weftmesh/weft/control/store"
	"github.com/weftmesh/weft/control/telemetry"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/wasm/oci"
)

// Defaults.
const (
	DefaultAddr         = "127.0.0.1:7070"
	DefaultWatchTimeout = 30 * time.Second
	// MaxWatchTimeout bounds a watch request's wait parameter.
	MaxWatchTimeout = 5 * time.Minute
	// caBundleInterval is how often the injection webhook's caBundle is
	// compared with the CA's roots (well inside -ca-propagation's default
	// minute, so a rotation's new root is trusted before it signs).
	caBundleInterval = 15 * time.Second
	// maxBodyBytes bounds a resource request body.
	maxBodyBytes = 8 << 20
)

// Options configure a control plane server.
type Options struct {
	// Addr is the listen address (default 127.0.0.1:7070; port 0 picks one).
	Addr string
	// DataDir holds modules/, state.json and audit.log. Required.
	DataDir string
	// ConfigDir, when set, is a directory of resource files watched and
	// synced into the store (the file source).
	ConfigDir string
	// Debounce is the file source's quiet period (default 200ms).
	Debounce time.Duration
	// PublicURL is the base URL sidecars use to reach this server (module
	// URLs in compiled configs); default http://<bound address>.
	PublicURL string
	// WatchTimeout is the longest a watch request waits (default 30s).
	WatchTimeout time.Duration
	// ScrapeInterval is how often sidecars' metrics are scraped (default
	// 10s; negative turns scraping off).
	ScrapeInterval time.Duration
	// CA configures the certificate authority (its Dir defaults to
	// DATA/ca). The CA always runs: it issues the API's serving
	// certificate and the certificates sidecars authenticate with. When
	// CA is set, compiled configs also carry mTLS between sidecars and
	// Policy resources; nil: the CA runs with defaults (trust domain
	// weft.local) and the mesh's data plane stays plaintext.
	CA *ca.Options
	// Insecure serves plain HTTP with no authentication at all (every
	// caller may do everything) and no certificate endpoint: for a
	// loopback-only development setup or behind a proxy that does both.
	Insecure bool
	// TLSCertFile and TLSKeyFile are an operator-supplied serving
	// certificate (PEM); default one issued by the CA for TLSHosts.
	TLSCertFile, TLSKeyFile string
	// TLSHosts are extra names (DNS or IP) for the issued serving
	// certificate, beside the listen host, 127.0.0.1, ::1, localhost and
	// PublicURL's host.
	TLSHosts []string
	// UsersFile lists operators: NAME ROLE sha256:HEX (a bearer token's
	// digest) or NAME ROLE cert (a client certificate). The bootstrap
	// admin token in DATA/admin.token is always accepted.
	UsersFile string
	// JoinTokenTTL is a join token's default lifetime (default 1h).
	JoinTokenTTL time.Duration
	// ModuleGrace is how long a module no resource or snapshot names is
	// kept before it is garbage-collected (default DefaultModuleGrace;
	// negative: never collected).
	ModuleGrace time.Duration
	// RegistrySecret (a docker config.json) and RegistryCA (PEM) are used
	// to pull Filter modules named by oci.
	RegistrySecret, RegistryCA string
	// VerifyKeys are PEM public-key files: when set, every module pulled by
	// oci must carry a cosign-format signature by one of them.
	VerifyKeys []string
	// Etcd, when set, keeps the mesh in etcd, shared with every replica
	// on the same cluster and prefix, instead of DATA/state.json. The
	// caller closes it after the server.
	Etcd *clientv3.Client
	// EtcdPrefix is the replicas' key prefix (default /weft/).
	EtcdPrefix string
	// EtcdMaxTxnOps is etcd's --max-txn-ops (default 128).
	EtcdMaxTxnOps int
	// StoreWriteTimeout bounds one write to the store, retries included
	// (default 15s): how long a write waits for etcd before answering 503.
	StoreWriteTimeout time.Duration
	// CAEncryptionKey (32 bytes) encrypts the CA's keys in etcd (AES-256-GCM).
	// Required with Etcd: replicas share one CA through etcd.
	CAEncryptionKey []byte
	// Kube, when set, makes a Kubernetes cluster a source of the mesh
	// (control/kube): Config and Translators come from the caller; the
	// server sets Store, Prepare and Logger. Its resources can then be
	// changed only in the cluster.
	Kube *kube.Options
	// KubeAudience is the audience of the projected service-account
	// tokens sidecars join with when Kube is set (default
	// kube.DefaultAudience): POST /v1/certificate then accepts such a
	// token, checked with the TokenReview API, instead of a join token.
	KubeAudience string
	// Inject, when set (with Kube), serves the sidecar injection webhook
	// at POST /inject on the API's TLS listener (control/kube/inject): no
	// client authentication, since it reads and changes no mesh state. Its
	// ControlURL defaults to the server's URL and its Audience to
	// KubeAudience.
	Inject *inject.Values
	// InjectWebhook, with Inject, names the MutatingWebhookConfiguration
	// whose caBundle the server keeps equal to its CA's roots
	// (kube.KeepWebhookCABundle); "" leaves caBundle to the operator.
	InjectWebhook string
	Logger        *zap.Logger
}

// Server is a running control plane.
type Server struct {
	o     Options
	log   *zap.Logger
	ln    net.Listener
	srv   *http.Server
	url   string
	reg   *registry.Registry
	audit *store.Audit
	store *store.Store
	files *filesource.Source
	kube  *kube.Source
	// review checks sidecars' service-account tokens (Kube set).
	review *kube.Reviewer
	// inject is the sidecar injection webhook (Options.Inject set).
	inject http.Handler
	scr    *telemetry.Scraper
	nodes  *tracker
	ca     *ca.CA
	// secrets keeps the CA sealed in etcd (nil on the file store).
	secrets *store.Secrets
	tokens  *ca.Tokens
	// modules pulls Filter modules named by oci (cache in DATA/oci);
	// verifyKeys are the mesh-wide signature keys.
	modules    *oci.Puller
	verifyKeys []crypto.PublicKey
	// verifier remembers the signatures already checked.
	verifier   oci.Verifier
	refusalsMu sync.Mutex
	refusals   []ModuleRefusal // the last module refusals, for /v1/status
	// meshTLS compiles mTLS and Policy into sidecar configs (Options.CA set).
	meshTLS bool
	// serving is the API's TLS certificate (nil with Insecure).
	serving *servingCert
	users   *users
	// adminToken is the bootstrap admin token and adminFile its file.
	adminToken, adminFile string
	caFile                string
	// gc is the module collection's state shared by replicas (etcd only).
	gc sharedGC

	closing   chan struct{}
	closeOnce sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// Start opens the data directory, loads the saved state, syncs the config
// directory, and serves the API until Close or Shutdown.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.DataDir == "" {
		return nil, errors.New("control: a data directory is required (-data DIR)")
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.WatchTimeout <= 0 {
		o.WatchTimeout = DefaultWatchTimeout
	}
	if o.JoinTokenTTL == 0 {
		o.JoinTokenTTL = ca.DefaultTokenTTL
	}
	if o.ModuleGrace == 0 {
		o.ModuleGrace = DefaultModuleGrace
	}
	if o.JoinTokenTTL < time.Second || o.JoinTokenTTL > ca.MaxTokenTTL {
		return nil, fmt.Errorf("control: join token ttl: %s is outside 1s..%s", o.JoinTokenTTL, ca.MaxTokenTTL)
	}
	if o.Insecure && o.CA != nil {
		return nil, errors.New("control: mesh mTLS (a trust domain) needs the TLS API: sidecars get their certificates over it; drop -insecure-api")
	}
	if o.Inject != nil && (o.Kube == nil || o.Insecure) {
		return nil, errors.New("control: sidecar injection needs the Kubernetes source (-kubeconfig or -kubernetes) and the TLS API (the API server calls webhooks over https only)")
	}
	if o.InjectWebhook != "" && (o.Inject == nil || o.TLSCertFile != "") {
		return nil, errors.New("control: -inject-webhook needs sidecar injection on and the serving certificate the CA issues (not -tls-cert: the CA's roots would not verify it)")
	}
	if o.Insecure && (o.TLSCertFile != "" || o.TLSKeyFile != "") {
		return nil, errors.New("control: -tls-cert/-tls-key and -insecure-api contradict each other")
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return nil, errors.New("control: give both -tls-cert and -tls-key, or neither")
	}
	if err := os.MkdirAll(o.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("control: data directory: %w", err)
	}
	s := &Server{o: o, log: o.Logger, closing: make(chan struct{}), nodes: newTracker()}
	var err error
	if s.reg, err = registry.Open(filepath.Join(o.DataDir, "modules")); err != nil {
		return nil, err
	}
	if o.Etcd != nil {
		// Uploaded through any replica, served by every one.
		s.gc.blobs = store.NewEtcdBlobs(o.Etcd, o.EtcdPrefix)
		s.reg.Share(s.gc.blobs)
	}
	s.modules = oci.NewPuller(oci.Options{CacheDir: filepath.Join(o.DataDir, "oci")})
	if len(o.VerifyKeys) > 0 {
		if s.verifyKeys, err = oci.LoadPublicKeys(o.VerifyKeys...); err != nil {
			return nil, fmt.Errorf("control: -verify-key: %w", err)
		}
	}
	if s.ln, err = net.Listen("tcp", o.Addr); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s.url = o.PublicURL
	if s.url == "" {
		scheme := "https://"
		if o.Insecure {
			scheme = "http://"
		}
		s.url = scheme + s.ln.Addr().String()
	}
	fail := func(err error) (*Server, error) {
		_ = s.ln.Close()
		if s.store != nil {
			_ = s.store.Close()
		}
		if s.audit != nil {
			_ = s.audit.Close()
		}
		return nil, err
	}
	if o.Inject != nil {
		v := *o.Inject
		if v.ControlURL == "" {
			v.ControlURL = s.url
		}
		if v.Audience == "" {
			v.Audience = o.KubeAudience
		}
		if v.Audience == "" {
			v.Audience = kube.DefaultAudience
		}
		in, err := inject.New(v)
		if err != nil {
			return fail(fmt.Errorf("control: -inject: %w", err))
		}
		s.inject = in.Handler(o.Logger)
	}
	if s.audit, err = store.OpenAudit(filepath.Join(o.DataDir, "audit.log")); err != nil {
		return fail(err)
	}
	if o.Etcd != nil {
		s.audit.Share(o.Etcd, o.EtcdPrefix)
	}
	var co ca.Options
	if o.CA != nil {
		co, s.meshTLS = *o.CA, true
	}
	if co.Dir == "" {
		co.Dir = filepath.Join(o.DataDir, "ca")
	}
	if co.Logger == nil {
		co.Logger = o.Logger
	}
	if o.Etcd != nil {
		s.ca, err = s.openSharedCA(ctx, co)
	} else {
		s.ca, err = ca.Open(co)
	}
	if err != nil {
		return fail(err)
	}
	if o.Etcd != nil {
		// Shared by the replicas: minted on one, redeemed on any, spent once.
		s.tokens = ca.OpenSharedTokens(store.NewEtcdKV(o.Etcd, o.EtcdPrefix, "tokens"))
	} else if s.tokens, err = ca.OpenTokens(filepath.Join(co.Dir, "tokens.json")); err != nil {
		return fail(err)
	}
	s.caFile = filepath.Join(o.DataDir, CAFile)
	if err := s.writeCAFile(); err != nil {
		return fail(err)
	}
	if err := s.loadUsers(); err != nil {
		return fail(err)
	}
	so := store.Options{Dir: o.DataDir, Compile: s.compile, Audit: s.audit, Logger: o.Logger, FileSource: o.ConfigDir != "", KubeSource: o.Kube != nil, WriteTimeout: o.StoreWriteTimeout}
	if o.Etcd != nil {
		so.Backend = store.NewEtcdBackend(o.Etcd, store.EtcdOptions{Prefix: o.EtcdPrefix, MaxTxnOps: o.EtcdMaxTxnOps, Logger: o.Logger})
	}
	if s.store, err = store.Open(so); err != nil {
		return fail(err)
	}
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if o.Etcd != nil && !o.Insecure {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.followSharedAdmin(ctx)
		}()
	}
	if s.gc.blobs != nil {
		// From the revision now, so a module collected as Start returns
		// is not missed while the watch is being set up.
		rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
		from, err := s.gc.blobs.Revision(rctx)
		rcancel()
		if err != nil {
			s.cancel()
			return fail(err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.followBlobs(ctx, from)
		}()
	}
	if o.ConfigDir != "" {
		if s.files, err = filesource.Start(ctx, filesource.Options{Dir: o.ConfigDir, Store: s.store, Debounce: o.Debounce, Logger: o.Logger,
			Prepare: func(rs []*mesh.Resource) error { return s.resolveModules(ctx, rs) }}); err != nil {
			s.cancel()
			return fail(err)
		}
	}
	if o.Kube != nil {
		ko := *o.Kube
		ko.Store, ko.Logger = s.store, o.Logger
		ko.Prepare = func(rs []*mesh.Resource) error { return s.resolveModules(ctx, rs) }
		if s.kube, err = kube.Start(ctx, ko); err != nil {
			s.stopBackground()
			return fail(err)
		}
		s.review = kube.NewReviewer(s.kube.Client(), o.KubeAudience)
		if o.InjectWebhook != "" {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				kube.KeepWebhookCABundle(ctx, s.kube.Client(), o.InjectWebhook, func() []byte {
					roots, _ := s.ca.Bundle()
					return identity.EncodeCertsPEM(roots...)
				}, caBundleInterval, o.Logger)
			}()
		}
	}
	if o.ModuleGrace > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.collectModules(ctx)
		}()
	}
	if s.secrets != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.followCA(ctx)
		}()
	}
	if o.ScrapeInterval >= 0 {
		s.scr = telemetry.New(telemetry.Options{Interval: o.ScrapeInterval, Targets: s.nodes.targets, Logger: o.Logger})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.scr.Run(ctx)
		}()
	}
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(o.Logger)}
	serve := s.ln
	if o.Insecure {
		s.log.Warn("the API serves plain HTTP with NO authentication (-insecure-api): anyone who reaches " + s.ln.Addr().String() + " can change the mesh")
	} else {
		if s.serving, err = s.newServingCert(); err != nil {
			s.cancel()
			return fail(err)
		}
		s.srv.TLSConfig = s.tlsConfig()
		serve = tls.NewListener(s.ln, s.srv.TLSConfig)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(serve); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("control plane server failed", zap.Error(err))
		}
	}()
	s.log.Info("control plane listening", zap.String("url", s.url), zap.Int64("revision", s.store.Revision()),
		zap.String("ca_file", s.caFile), zap.String("ca_fingerprint", s.CAFingerprint()), zap.Bool("tls", !o.Insecure), zap.Bool("inject", s.inject != nil))
	return s, nil
}

// compile validates and compiles a mesh with this server's registry and
// module URLs.
func (s *Server) compile(m *mesh.Mesh) (map[string]*mesh.NodeConfig, error) {
	td := ""
	if s.meshTLS {
		td = s.ca.TrustDomain()
	}
	return mesh.Compile(m, mesh.Options{
		TrustDomain: td,
		HasModule:   s.reg.Has,
		ModuleURL:   func(sha string) string { return s.url + "/v1/modules/" + sha },
	})
}

// CAFile is the path of the CA bundle clients trust (DATA/ca.pem).
func (s *Server) CAFile() string { return s.caFile }

// AdminToken is the bootstrap admin token (also in AdminTokenFile); ""
// on a replica on etcd that does not hold the token the replicas share
// (it was made by another, and not copied here) or no longer does.
func (s *Server) AdminToken() string {
	if d := s.users.admin.Load(); s.adminToken == "" || d == nil || *d != hashToken(s.adminToken) {
		return ""
	}
	return s.adminToken
}

// AdminTokenFile is the path of the bootstrap admin token
// (DATA/admin.token); "" when AdminToken is.
func (s *Server) AdminTokenFile() string {
	if s.AdminToken() == "" {
		return ""
	}
	return s.adminFile
}

// Insecure reports whether the API serves plain HTTP without
// authentication.
func (s *Server) Insecure() bool { return s.o.Insecure }

// URL is the base URL of the API.
func (s *Server) URL() string { return s.url }

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Store is the resource store.
func (s *Server) Store() *store.Store { return s.store }

// Registry is the module registry.
func (s *Server) Registry() *registry.Registry { return s.reg }

// Telemetry is the current mesh-wide metrics view (empty when scraping is
// off).
func (s *Server) Telemetry() telemetry.View {
	if s.scr == nil {
		return telemetry.View{}
	}
	return s.scr.View()
}

// ScrapeNow scrapes every sidecar once, now (scraping must be on).
func (s *Server) ScrapeNow(ctx context.Context) {
	if s.scr != nil {
		s.scr.ScrapeOnce(ctx)
	}
}

func (s *Server) stopBackground() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.cancel()
	if s.kube != nil {
		s.kube.Close()
	}
	if s.files != nil {
		s.files.Close()
	}
}

// Close stops the server at once: connections (watches included) are cut,
// as when the process is killed.
func (s *Server) Close() error {
	s.stopBackground()
	err := s.srv.Close()
	s.wg.Wait()
	return errors.Join(err, s.store.Close(), s.audit.Close())
}

// Shutdown ends pending watches (they answer "no change"), then stops
// accepting and waits for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopBackground()
	err := s.srv.Shutdown(ctx)
	s.wg.Wait()
	return errors.Join(err, s.store.Close(), s.audit.Close())
}
