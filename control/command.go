package control

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/kube"
	"github.com/weftmesh/weft/control/kube/inject"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/control/store"
)

// Command runs `weft control`: it serves the control plane until ctx ends,
// then shuts down gracefully. args exclude the command name.
//
//	weft control -data DIR [-dir DIR] [-addr ADDR] [-public-url URL]
//	             [-tls-cert F -tls-key F | -tls-host NAME,...] [-users FILE]
//	             [-join-token-ttl 1h] [-insecure-api]
//	             [-scrape 10s] [-watch-timeout 30s] [-module-grace 10m] [-log-level info]
//	             [-store etcd://HOST:PORT,... -etcd-ca F [-etcd-cert F -etcd-key F]
//	              | -etcd-insecure] [-etcd-prefix /weft/] [-ca-encryption-key-file F]
//	             [-kubeconfig PATH|in-cluster | -kubernetes] [-kube-context NAME] [-kube-audience weft]
//	             [-inject=false | -inject-config FILE] [-inject-image IMAGE] [-inject-webhook NAME]
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("control", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", server.DefaultAddr, "listen address of the API and watch endpoints")
	data := fs.String("data", "", "data directory: modules/, state.json, audit.log (required)")
	dir := fs.String("dir", "", "directory of resource YAML files, watched and synced (optional)")
	public := fs.String("public-url", "", "base URL sidecars reach this server at (default https://ADDR)")
	insecure := fs.Bool("insecure-api", false, "serve plain HTTP with NO authentication (development only; sidecars cannot get certificates)")
	tlsCert := fs.String("tls-cert", "", "the API's serving certificate (PEM; with -tls-key); default: issued by the mesh CA")
	tlsKey := fs.String("tls-key", "", "the serving certificate's key (PEM)")
	tlsHosts := fs.String("tls-host", "", "extra comma-separated DNS names or IPs for the issued serving certificate (beside the listen host, 127.0.0.1, localhost, the hostname and -public-url's host)")
	usersFile := fs.String("users", "", "operators file: lines NAME ROLE sha256:HEX (a bearer token's sha256) or NAME ROLE cert; ROLE viewer, editor or admin")
	joinTTL := fs.Duration("join-token-ttl", time.Hour, "default lifetime of join tokens")
	scrape := fs.Duration("scrape", 10*time.Second, "how often to scrape sidecars' metrics (0 turns scraping off)")
	watch := fs.Duration("watch-timeout", server.DefaultWatchTimeout, "longest a sidecar's watch request waits")
	moduleGrace := fs.Duration("module-grace", server.DefaultModuleGrace, "how long a module no resource or snapshot names is kept before it is garbage-collected (negative: never)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	trustDomain := fs.String("trust-domain", "", "run the certificate authority for this SPIFFE trust domain (e.g. weft.local); empty: no CA, plaintext mesh")
	certTTL := fs.Duration("cert-ttl", 24*time.Hour, "lifetime of sidecar certificates (renewed at half-life)")
	caCert := fs.String("ca-cert", "", "operator-supplied root CA certificate (PEM; with -ca-key); default: generated in DATA/ca")
	caKey := fs.String("ca-key", "", "the root CA's private key (PEM)")
	intermediate := fs.Bool("ca-intermediate", false, "sign sidecar certificates with an intermediate CA under the root")
	propagation := fs.Duration("ca-propagation", time.Minute, "after POST /v1/ca/rotate, how long the new root is only trusted before it signs (longer than sidecars' -bundle-poll)")
	regSecret := fs.String("registry-secret", "", "docker config.json with credentials for pulling Filter modules named by oci")
	regCA := fs.String("registry-ca", "", "PEM bundle trusted for OCI registries' TLS, beside the system roots")
	verifyKeys := fs.String("verify-key", "", "comma-separated PEM public keys: every Filter module pulled by oci must be signed (cosign format) by one of them")
	storeURL := fs.String("store", "", "where the mesh is kept: empty = DATA/state.json on this machine; etcd://HOST:PORT,HOST:PORT,... = an etcd cluster that every replica shares")
	etcdCA := fs.String("etcd-ca", "", "CA certificate (PEM) of etcd's serving certificates (with -store etcd://)")
	etcdCert := fs.String("etcd-cert", "", "client certificate (PEM) for etcd --client-cert-auth")
	etcdKey := fs.String("etcd-key", "", "the client certificate's key (PEM)")
	etcdInsecure := fs.Bool("etcd-insecure", false, "talk plain HTTP to etcd (development only: anyone on the path can read and rewrite the mesh)")
	etcdPrefix := fs.String("etcd-prefix", "/weft/", "prefix of weft's keys in etcd: replicas of one control plane share it")
	etcdMaxTxnOps := fs.Int("etcd-max-txn-ops", 128, "etcd's --max-txn-ops: a change writing more keys is refused with a clear error")
	caKeyFile := fs.String("ca-encryption-key-file", "", "file with the base64 of 32 random bytes that encrypts the CA's keys in etcd (AES-256-GCM); default $WEFT_CA_ENCRYPTION_KEY; required with -store etcd://")
	kubeconfig := fs.String("kubeconfig", "", "watch this Kubernetes cluster (Services, EndpointSlices, routes) as a source of the mesh: a kubeconfig file, or \"in-cluster\" for the pod's service account")
	kubernetes := fs.Bool("kubernetes", false, "watch the Kubernetes cluster kubectl would use: $KUBECONFIG or ~/.kube/config, else the in-cluster config when running in a pod")
	kubeContext := fs.String("kube-context", "", "the kubeconfig context to use (default its current context)")
	cpuProfile := fs.String("cpuprofile", "", "write this process's CPU profile to this file until it exits (for profiling, as weft bench control -control-cpuprofile does)")
	kubeAudience := fs.String("kube-audience", kube.DefaultAudience, "with a Kubernetes source: sidecars may join with a projected service-account token for this audience (checked with the TokenReview API) instead of a join token")
	injectOn := fs.Bool("inject", false, "serve the sidecar injection webhook at /inject (on by default with a Kubernetes source and the TLS API; -inject=false turns it off)")
	injectConfig := fs.String("inject-config", "", "injection values (YAML: image, control_url, ca_configmap, inbound_port, ...; see docs/kubernetes.md), e.g. the weft-inject ConfigMap mounted as a file; read at start")
	injectWebhook := fs.String("inject-webhook", "", "keep the caBundle of this MutatingWebhookConfiguration (e.g. weft-inject) equal to the CA's roots; needs get and patch on it")
	injectImage := fs.String("inject-image", "", "the injected sidecar's image (overrides the values' image; default "+inject.DefaultImage+")")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: weft control -data DIR [-dir DIR] [-addr ADDR] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data == "" {
		fs.Usage()
		return fmt.Errorf("control: -data DIR is required")
	}
	log, err := newLogger(*level, stderr)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("control: -cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("control: -cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	interval := *scrape
	if interval == 0 {
		interval = -1
	}
	var caOpts *ca.Options
	if *trustDomain != "" {
		caOpts = &ca.Options{TrustDomain: *trustDomain, TTL: *certTTL, RootCertFile: *caCert, RootKeyFile: *caKey, Intermediate: *intermediate, Propagation: *propagation}
	}
	var hosts []string
	for _, h := range strings.Split(*tlsHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	var keys []string
	for _, k := range strings.Split(*verifyKeys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	so := server.Options{Addr: *addr, DataDir: *data, ConfigDir: *dir, PublicURL: *public,
		ScrapeInterval: interval, WatchTimeout: *watch, Logger: log, CA: caOpts,
		Insecure: *insecure, TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, TLSHosts: hosts, UsersFile: *usersFile, JoinTokenTTL: *joinTTL, ModuleGrace: *moduleGrace,
		RegistrySecret: *regSecret, RegistryCA: *regCA, VerifyKeys: keys}
	if *storeURL != "" {
		eps, err := store.ParseEtcdURL(*storeURL)
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		if so.CAEncryptionKey, err = store.ReadEncryptionKey(*caKeyFile); err != nil {
			return fmt.Errorf("control: %w", err)
		}
		cli, err := store.DialEtcd(store.EtcdClientConfig{Endpoints: eps, CAFile: *etcdCA, CertFile: *etcdCert, KeyFile: *etcdKey, Insecure: *etcdInsecure, Logger: log})
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		defer cli.Close()
		so.Etcd, so.EtcdPrefix, so.EtcdMaxTxnOps = cli, *etcdPrefix, *etcdMaxTxnOps
		if !strings.HasPrefix(so.EtcdPrefix, "/") || !strings.HasSuffix(so.EtcdPrefix, "/") {
			return fmt.Errorf("control: -etcd-prefix %q: want a path that starts and ends with /", so.EtcdPrefix)
		}
	} else if *etcdCA != "" || *etcdCert != "" || *etcdInsecure || *caKeyFile != "" {
		return errors.New("control: -etcd-*/-ca-encryption-key-file flags need -store etcd://…")
	}
	if *kubeconfig != "" || *kubernetes {
		cfg, err := kube.LoadConfig(*kubeconfig, *kubeContext)
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		so.Kube = &kube.Options{Config: cfg, Translators: KubeTranslators()}
		so.KubeAudience = *kubeAudience
	} else if *kubeContext != "" {
		return errors.New("control: -kube-context needs -kubeconfig or -kubernetes")
	}
	if so.Inject, err = injectValues(fs, *injectOn, *injectConfig, *injectImage, so.Kube != nil, *insecure); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if *injectWebhook != "" && so.Inject == nil {
		return errors.New("control: -inject-webhook needs sidecar injection on (with -kubeconfig or -kubernetes, the TLS API, and not -inject=false)")
	}
	so.InjectWebhook = *injectWebhook
	if so.Inject != nil && !explicitInject(fs) && *public == "" && unspecifiedHost(*addr) {
		// On only by default, with no URL a pod could dial: a start that
		// worked before injection existed keeps working, without it.
		log.Warn("sidecar injection is off: the API listens on " + *addr + " and no -public-url says where pods reach it (set -public-url to turn it on)")
		so.Inject = nil
	}
	s, err := server.Start(ctx, so)
	if err != nil {
		return err
	}
	where := "store " + filepath.Join(*data, "state.json")
	if *storeURL != "" {
		where = "store " + *storeURL + " prefix " + *etcdPrefix
	}
	if so.Kube != nil {
		where += ", kubernetes " + so.Kube.Config.Host
	}
	fmt.Fprintf(stdout, "weft control plane at %s (revision %d, %s)\n", s.URL(), s.Store().Revision(), where)
	if s.Insecure() {
		fmt.Fprintln(stdout, "WARNING: plain HTTP and no authentication (-insecure-api)")
	} else {
		if tf := s.AdminTokenFile(); tf != "" {
			fmt.Fprintf(stdout, "CA bundle: %s (fingerprint %s)\nadmin token: %s\n", s.CAFile(), s.CAFingerprint(), tf)
			fmt.Fprintf(stdout, "  export WEFT_SERVER=%s WEFT_CA=%s WEFT_TOKEN_FILE=%s\n", s.URL(), s.CAFile(), tf)
		} else {
			// A replica on etcd that joined after another made the token.
			fmt.Fprintf(stdout, "CA bundle: %s (fingerprint %s)\nadmin token: shared through etcd; it is in admin.token in the data directory of the replica that made it (copy it to %s to have it here)\n",
				s.CAFile(), s.CAFingerprint(), filepath.Join(*data, "admin.token"))
		}
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Shutdown(sctx)
}

// injectValues decides whether the injection webhook runs and reads its
// values: on by default with a Kubernetes source (unless the API is plain
// HTTP, which the API server cannot call); asked for explicitly without
// one, or given values while off, it is an error.
func injectValues(fs *flag.FlagSet, on bool, file, image string, kubeOn, insecure bool) (*inject.Values, error) {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "inject" })
	switch {
	case set && on && !kubeOn:
		return nil, errors.New("-inject needs the Kubernetes source (-kubeconfig or -kubernetes)")
	case set && on && insecure:
		return nil, errors.New("-inject needs the TLS API (the API server calls webhooks over https only): drop -insecure-api")
	case set && !on, !kubeOn, insecure:
		if file != "" || image != "" {
			return nil, errors.New("-inject-config/-inject-image need sidecar injection on (with -kubeconfig or -kubernetes, the TLS API, and not -inject=false)")
		}
		return nil, nil
	}
	v := inject.Values{}
	if file != "" {
		var err error
		if v, err = inject.LoadValues(file); err != nil {
			return nil, err
		}
	}
	if image != "" {
		v.Image = image
	}
	return &v, nil
}

// explicitInject reports whether any injection flag was given.
func explicitInject(fs *flag.FlagSet) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || strings.HasPrefix(f.Name, "inject") })
	return set
}

// unspecifiedHost reports whether addr listens on every address
// (0.0.0.0, ::, or no host).
func unspecifiedHost(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(h)
	return h == "" || ip != nil && ip.IsUnspecified()
}

// KubeTranslators are the Kubernetes source's translators, in order:
// discovery (Services, EndpointSlices), then routes and weft's own
// resources.
func KubeTranslators() []kube.Translator {
	return []kube.Translator{kube.Discovery(), kube.WeftResources(), kube.GatewayAPI()}
}

func newLogger(level string, w io.Writer) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), lvl)
	return zap.New(core), nil
}
