package inject

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateDefaults(t *testing.T) {
	v := Values{ControlURL: "https://weft-control.weft-system.svc:7070", Audience: "weft"}
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	if v.Image != DefaultImage || v.ImagePullPolicy != "IfNotPresent" || v.CAConfigMap != "weft-ca" || v.InboundPort != 15006 ||
		v.TokenExpirationSeconds != 3600 || !*v.NativeSidecar || v.RunAsUser != 65532 || v.CPURequest != "10m" || v.MemoryRequest != "32Mi" {
		t.Fatalf("defaults: %+v", v)
	}
}

// Every bad value is refused, naming its field (and all of them at once).
func TestValidateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    Values
		want []string
	}{
		{"no control url", Values{Audience: "weft"}, []string{"control_url: empty: set -public-url"}},
		{"plain http", Values{ControlURL: "http://c:7070", Audience: "weft"}, []string{"control_url", "want https://"}},
		{"unspecified host", Values{ControlURL: "https://0.0.0.0:7070", Audience: "weft"}, []string{"control_url", "0.0.0.0 is a listen address"}},
		{"one bad replica", Values{ControlURL: "https://a:7070,https://b:7070/x", Audience: "weft"}, []string{"control_url", "no path"}},
		{"everything", Values{ControlURL: "https://c:7070", Image: "Weft Proxy", ImagePullPolicy: "Sometimes", CAConfigMap: "Bad_Name",
			InboundPort: 70000, TokenExpirationSeconds: 60, RunAsUser: -1, CPURequest: "lots", MemoryLimit: "-1Mi"},
			[]string{"image: \"Weft Proxy\": white space", "image_pull_policy: \"Sometimes\"", "ca_configmap: \"Bad_Name\"", "inbound_port: 70000",
				"token_expiration_seconds: 60", "run_as_user: -1", "cpu_request: \"lots\"", "memory_limit: \"-1Mi\": negative", "audience (-kube-audience): empty"}},
		{"upper-case repository", Values{ControlURL: "https://c", Audience: "weft", Image: "ghcr.io/WeftMesh/weft:1"}, []string{"image", "lower case"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.v.Validate()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	ok := Values{ControlURL: "https://a:7070,https://b:7070", Audience: "weft", Image: "registry.Example.com:5000/weft/proxy@sha256:abcd"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("two replicas, a registry host with a port and a digest: %v", err)
	}
}

func TestLoadValues(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v, err := LoadValues(write("ok.yaml", "image: example.com/weft:1.2\ninbound_port: 16006\nnative_sidecar: false\nmemory_limit: 256Mi\n"))
	if err != nil || v.Image != "example.com/weft:1.2" || v.InboundPort != 16006 || *v.NativeSidecar || v.MemoryLimit != "256Mi" {
		t.Fatalf("%+v %v", v, err)
	}
	if v, err := LoadValues(write("empty.yaml", "")); err != nil || v.Image != "" {
		t.Fatalf("an empty file: %+v %v", v, err)
	}
	bad := write("bad.yaml", "image: x\ninbound-port: 1\n")
	if _, err := LoadValues(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "inbound-port") {
		t.Fatalf("an unknown field: %v", err)
	}
	// Validation errors name the file.
	v, _ = LoadValues(write("port.yaml", "inbound_port: 0\nimage_pull_policy: never\n"))
	v.ControlURL, v.Audience = "https://c", "weft"
	if err := v.Validate(); err == nil || !strings.Contains(err.Error(), "port.yaml") || !strings.Contains(err.Error(), "image_pull_policy: \"never\"") {
		t.Fatalf("%v", err)
	}
	if _, err := LoadValues(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("a missing file: %v", err)
	}
}
