// Package kubetest runs a real Kubernetes API server for the control
// plane's tests, the way controller-runtime's envtest does: kube-apiserver
// (built by .ci/kube-apiserver.sh from k8s.io/kubernetes at the release
// matching client-go) on a random loopback port, backed by a real etcd
// member started in-process (control/internal/etcdtest), with a temporary
// certificate directory, a service-account signing key and an admin token.
// Tests that need it skip, naming the install command, when the binary is
// absent; CI always builds it.
// Test-only: it must not be imported by non-test code.
package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weftmesh/weft/control/internal/etcdtest"
	"github.com/weftmesh/weft/proxy/loopback"
)

// Version is the Kubernetes release the tests run against; client-go,
// api and apimachinery are at the matching v0 release in go.mod.
const Version = "1.37.2"

// Issuer is the API server's service-account token issuer.
const Issuer = "https://kubernetes.default.svc"

// InstallCommand builds the binary the tests need.
const InstallCommand = "bash .ci/kube-apiserver.sh"

// Binary returns the kube-apiserver to run: $WEFT_KUBE_APISERVER, else the
// one .ci/kube-apiserver.sh caches, else "" .
func Binary() string {
	if p := os.Getenv("WEFT_KUBE_APISERVER"); p != "" {
		return p
	}
	base := os.Getenv("WEFT_KUBE_CACHE")
	if base == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return ""
			}
			cache = filepath.Join(home, ".cache")
		}
		base = filepath.Join(cache, "weft-kube", "v"+Version)
	}
	p := filepath.Join(base, "kube-apiserver")
	if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
		return p
	}
	return ""
}

// Env is a running API server.
type Env struct {
	// Config is an admin client configuration (system:masters).
	Config *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface
	// URL is the API server's https URL; CAFile its serving CA.
	URL    string
	CAFile string
	// Dir holds the server's files (certificates, keys, tokens, log).
	Dir string

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	log  *lockedBuffer
}

// Start starts an API server and stops it when the test ends. Without the
// binary, the test is skipped with the command that installs it.
func Start(t testing.TB) *Env {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skipf("kube-apiserver %s is not installed: run %q (about 12 minutes the first time) or set WEFT_KUBE_APISERVER", Version, InstallCommand)
	}
	etcd := etcdtest.Start(t, 1)
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var e *Env
		if e, err = start(t, bin, etcd.Endpoints()[0], fmt.Sprintf("/registry-%d", attempt)); err == nil {
			return e
		}
		t.Logf("kube-apiserver start (attempt %d): %v", attempt+1, err)
	}
	t.Fatalf("kube-apiserver: %v", err)
	return nil
}

func start(t testing.TB, bin, etcdURL, prefix string) (*Env, error) {
	dir := t.TempDir()
	// The service-account token signer (TokenRequest, projected tokens).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	saKey := write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	saPub := write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	adminToken := hex.EncodeToString(tok)
	tokens := write("tokens.csv", []byte(adminToken+",admin,admin,system:masters\n"))
	certDir := filepath.Join(dir, "certs")
	port := freePort(t)
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--etcd-prefix=" + prefix,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The "kubernetes" Service's endpoints would be the loopback
		// address, which the reconciler refuses.
		"--endpoint-reconciler-type=none",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + certDir,
		"--service-account-issuer=" + Issuer,
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	}
	log := &lockedBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	e := &Env{t: t, cmd: cmd, done: make(chan struct{}), log: log, Dir: dir,
		URL: fmt.Sprintf("https://127.0.0.1:%d", port)}
	go func() { _ = cmd.Wait(); close(e.done) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-e.done
		}
	}
	if err := e.waitReady(adminToken, certDir); err != nil {
		stop()
		return nil, fmt.Errorf("%w\n--- kube-apiserver log (tail) ---\n%s", err, tail(log.String(), 40))
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("--- kube-apiserver log (tail) ---\n%s", tail(log.String(), 60))
		}
	})
	e.Config = &rest.Config{Host: e.URL, BearerToken: adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: e.CAFile}, QPS: 200, Burst: 400, Timeout: 30 * time.Second}
	e.Client = kubernetes.NewForConfigOrDie(e.Config)
	return e, nil
}

// waitReady polls /readyz until it answers ok (up to 90 s: the first start
// on a loaded machine runs its migrations and bootstraps RBAC).
func (e *Env) waitReady(token, certDir string) error {
	deadline := time.Now().Add(90 * time.Second)
	hc := &http.Client{Timeout: 5 * time.Second}
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-e.done:
			return errors.New("kube-apiserver exited")
		default:
		}
		if e.CAFile == "" {
			// The self-signed serving certificate appears in the cert dir.
			if crt := filepath.Join(certDir, "apiserver.crt"); fileExists(crt) {
				pool := x509.NewCertPool()
				b, err := os.ReadFile(crt)
				if err == nil && pool.AppendCertsFromPEM(b) {
					e.CAFile = crt
					hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
				}
			}
		}
		if e.CAFile != "" {
			req, _ := http.NewRequest("GET", e.URL+"/readyz", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return nil
				}
				last = fmt.Sprintf("%d %s", resp.StatusCode, tail(string(b), 5))
			} else {
				last = err.Error()
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after 90s (last: %s)", last)
}

// Log returns the API server's output so far.
func (e *Env) Log() string { return e.log.String() }

// ApplyCRDs creates the CustomResourceDefinitions in the YAML files (one
// or more documents each) and waits until each is Established.
func (e *Env) ApplyCRDs(files ...string) {
	e.t.Helper()
	cs := apiext.NewForConfigOrDie(e.Config)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			e.t.Fatal(err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var crd apiextv1.CustomResourceDefinition
			if err := dec.Decode(&crd); err == io.EOF {
				break
			} else if err != nil {
				e.t.Fatalf("%s: %v", f, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			crd.ResourceVersion = ""
			if _, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, &crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				e.t.Fatalf("%s: creating CRD %s: %v", f, crd.Name, err)
			}
			names = append(names, crd.Name)
		}
	}
	for _, n := range names {
		for {
			crd, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, n, metav1.GetOptions{})
			if err == nil && established(crd) {
				break
			}
			if ctx.Err() != nil {
				e.t.Fatalf("CRD %s not established: %v", n, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func established(crd *apiextv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
			return true
		}
	}
	return false
}

// GatewayAPIVersion is the sigs.k8s.io/gateway-api release whose CRDs
// GatewayAPICRDs reads when go.mod does not name one.
const GatewayAPIVersion = "v1.6.3"

// GatewayAPICRDs are the standard-channel Gateway API CRD files of the
// sigs.k8s.io/gateway-api release in go.mod (read from the module cache).
func GatewayAPICRDs(t testing.TB, channel string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		// Not (yet) a requirement of the module: the release the code
		// builds with, from the module cache.
		out, err = exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/gateway-api@"+GatewayAPIVersion).Output()
		var m struct{ Dir string }
		if err == nil {
			err = json.Unmarshal(out, &m)
		}
		if err != nil || m.Dir == "" {
			t.Fatalf("locating sigs.k8s.io/gateway-api %s: %v", GatewayAPIVersion, err)
		}
		out = []byte(m.Dir)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", channel)
	files, err := filepath.Glob(filepath.Join(dir, "gateway.networking.k8s.io_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Gateway API CRDs in %s (%v)", dir, err)
	}
	return files
}

// ServiceAccountConfig returns a client configuration that authenticates
// as namespace/name with a token from the TokenRequest API (the service
// account is created if missing). Give it only the RBAC it needs.
func (e *Env) ServiceAccountConfig(namespace, name string, audiences ...string) *rest.Config {
	e.t.Helper()
	tok := e.ServiceAccountToken(namespace, name, audiences...)
	return &rest.Config{Host: e.URL, BearerToken: tok,
		TLSClientConfig: rest.TLSClientConfig{CAFile: e.CAFile}, QPS: 200, Burst: 400, Timeout: 30 * time.Second}
}

// ServiceAccountToken creates namespace/name if missing and returns a
// token for it from the TokenRequest API, valid for an hour.
func (e *Env) ServiceAccountToken(namespace, name string, audiences ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.EnsureNamespace(namespace)
	if _, err := e.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, newServiceAccount(namespace, name), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatalf("creating service account %s/%s: %v", namespace, name, err)
	}
	exp := int64(3600)
	tr, err := e.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, newTokenRequest(audiences, exp), metav1.CreateOptions{})
	if err != nil {
		e.t.Fatalf("token for %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

// EnsureNamespace creates a namespace if it does not exist.
func (e *Env) EnsureNamespace(name string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, newNamespace(name), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// WriteKubeconfig writes a kubeconfig for cfg (bearer token, CA file) and
// returns its path.
func (e *Env) WriteKubeconfig(cfg *rest.Config) string {
	e.t.Helper()
	p := filepath.Join(e.t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: test
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, cfg.Host, cfg.TLSClientConfig.CAFile, cfg.BearerToken)
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// freePort is a loopback port free right now, below the ephemeral range
// (loopback.FreeAddr).
func freePort(t testing.TB) int {
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<20 { // keep the last few MiB
		l.b.Reset()
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
