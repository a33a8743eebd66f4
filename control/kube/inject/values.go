package inject

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults of Values.
const (
	DefaultImage       = "ghcr.io/weftmesh/weft:latest"
	DefaultCAConfigMap = "weft-ca"
	DefaultInboundPort = 15006
	// DefaultTokenExpiration is the projected token's lifetime in
	// seconds; the kubelet renews it at 80% of that.
	DefaultTokenExpiration = 3600
	// minTokenExpiration is the API server's floor for a projected
	// token (serviceAccountToken.expirationSeconds).
	minTokenExpiration = 600
	DefaultRunAsUser   = 65532
)

// Values are the operator's injection settings: from -inject-config (a
// YAML file, usually the weft-inject ConfigMap mounted into the control
// plane) and flags. Zero fields take their defaults in Validate.
type Values struct {
	// Image is the sidecar's image (default DefaultImage); a pod may pick
	// another with the weftmesh.io/image annotation.
	Image string `yaml:"image"`
	// ImagePullPolicy is Always, IfNotPresent (default) or Never.
	ImagePullPolicy string `yaml:"image_pull_policy"`
	// ControlURL is what sidecars dial (--control): default the control
	// plane's -public-url.
	ControlURL string `yaml:"control_url"`
	// CAConfigMap is the ConfigMap, in each workload namespace, whose key
	// ca.pem is the control plane's CA bundle (--control-ca).
	CAConfigMap string `yaml:"ca_configmap"`
	// InboundPort is the sidecar's inbound listener port, declared as the
	// container port weft-inbound (it must be the port of the Sidecar
	// resource's inbound); weftmesh.io/inbound-port overrides it per pod.
	InboundPort int32 `yaml:"inbound_port"`
	// TokenExpirationSeconds is the projected token's lifetime (at least
	// 600; default 3600).
	TokenExpirationSeconds int64 `yaml:"token_expiration_seconds"`
	// NativeSidecar (default true) adds the sidecar as an init container
	// with restartPolicy Always (Kubernetes' sidecar containers): it starts
	// before the app's containers and stops after them, so a Job ends
	// when its work does. false appends it to the containers instead.
	NativeSidecar *bool `yaml:"native_sidecar"`
	// RunAsUser is the sidecar's uid (default 65532, non-root).
	RunAsUser int64 `yaml:"run_as_user"`
	// CPURequest, MemoryRequest, CPULimit and MemoryLimit are the
	// sidecar's resources (Kubernetes quantities; default requests
	// 10m and 32Mi, no limits).
	CPURequest    string `yaml:"cpu_request"`
	MemoryRequest string `yaml:"memory_request"`
	CPULimit      string `yaml:"cpu_limit"`
	MemoryLimit   string `yaml:"memory_limit"`

	// Audience is the projected token's audience: the control plane's
	// -kube-audience, not a file value (the two must agree).
	Audience string `yaml:"-"`
	// Source names where the values came from in errors (the file).
	Source string `yaml:"-"`
}

// LoadValues reads Values from a YAML file, strictly: an unknown field is
// an error naming it. An empty file is all defaults.
func LoadValues(path string) (Values, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Values{}, fmt.Errorf("inject values: %w", err)
	}
	v := Values{Source: path}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil && !errors.Is(err, io.EOF) {
		return Values{}, fmt.Errorf("inject values %s: %w", path, err)
	}
	return v, nil
}

// Validate fills in defaults and checks every value, returning all the
// problems at once, each naming its field.
func (v *Values) Validate() error {
	if v.Image == "" {
		v.Image = DefaultImage
	}
	if v.ImagePullPolicy == "" {
		v.ImagePullPolicy = string(corev1.PullIfNotPresent)
	}
	if v.CAConfigMap == "" {
		v.CAConfigMap = DefaultCAConfigMap
	}
	if v.InboundPort == 0 {
		v.InboundPort = DefaultInboundPort
	}
	if v.TokenExpirationSeconds == 0 {
		v.TokenExpirationSeconds = DefaultTokenExpiration
	}
	if v.NativeSidecar == nil {
		t := true
		v.NativeSidecar = &t
	}
	if v.RunAsUser == 0 {
		v.RunAsUser = DefaultRunAsUser
	}
	if v.CPURequest == "" {
		v.CPURequest = "10m"
	}
	if v.MemoryRequest == "" {
		v.MemoryRequest = "32Mi"
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if err := checkImage(v.Image); err != nil {
		bad("image", "%v", err)
	}
	switch corev1.PullPolicy(v.ImagePullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("image_pull_policy", "%q: want Always, IfNotPresent or Never", v.ImagePullPolicy)
	}
	if err := checkControlURL(v.ControlURL); err != nil {
		bad("control_url", "%v", err)
	}
	if msgs := validation.IsDNS1123Subdomain(v.CAConfigMap); len(msgs) > 0 {
		bad("ca_configmap", "%q is not a ConfigMap name: %s", v.CAConfigMap, strings.Join(msgs, "; "))
	}
	if v.InboundPort < 1 || v.InboundPort > 65535 {
		bad("inbound_port", "%d: want 1..65535", v.InboundPort)
	}
	if v.TokenExpirationSeconds < minTokenExpiration || v.TokenExpirationSeconds > 1<<32 {
		bad("token_expiration_seconds", "%d: want %d (the API server's minimum) to %d", v.TokenExpirationSeconds, minTokenExpiration, int64(1)<<32)
	}
	if v.RunAsUser < 1 {
		bad("run_as_user", "%d: want a non-root uid (>= 1)", v.RunAsUser)
	}
	if v.Audience == "" {
		bad("audience (-kube-audience)", "empty")
	}
	for _, q := range []struct{ field, val string }{{"cpu_request", v.CPURequest}, {"memory_request", v.MemoryRequest}, {"cpu_limit", v.CPULimit}, {"memory_limit", v.MemoryLimit}} {
		if q.val == "" {
			continue
		}
		if n, err := resource.ParseQuantity(q.val); err != nil {
			bad(q.field, "%q: %v (e.g. 100m, 64Mi)", q.val, err)
		} else if n.Sign() < 0 {
			bad(q.field, "%q: negative", q.val)
		}
	}
	if len(errs) > 0 {
		where := "inject values"
		if v.Source != "" {
			where += " " + v.Source
		}
		return fmt.Errorf("%s: %w", where, errors.Join(errs...))
	}
	return nil
}

// checkImage refuses what no container runtime would pull: an empty
// reference, whitespace, an upper-case repository.
func checkImage(img string) error {
	if img == "" {
		return errors.New("empty")
	}
	if strings.TrimSpace(img) != img || strings.ContainsAny(img, " \t\r\n") {
		return fmt.Errorf("%q: white space in an image reference", img)
	}
	repo := img
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	path := repo
	if i := strings.IndexByte(repo, '/'); i >= 0 && strings.ContainsAny(repo[:i], ".:") {
		path = repo[i+1:] // a registry host may have upper case and a port
	}
	if path == "" || strings.ToLower(path) != path {
		return fmt.Errorf("%q: the repository must be non-empty and lower case", img)
	}
	return nil
}

// checkControlURL wants https URLs (several replicas' separated by commas,
// as weft proxy --control takes them) with a host a pod can dial.
func checkControlURL(list string) error {
	if list == "" {
		return errors.New("empty: set -public-url (what sidecars dial) or control_url")
	}
	for _, s := range strings.Split(list, ",") {
		if err := checkOneURL(s); err != nil {
			return err
		}
	}
	return nil
}

func checkOneURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: want https://HOST[:PORT] (sidecars join over TLS)", s)
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%q: %s is a listen address, not one a pod can dial; set -public-url (e.g. https://weft-control.weft-system.svc:7070)", s, u.Hostname())
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("%q: want no path, query or user", s)
	}
	return nil
}
