package kube_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/weftmesh/weft/control"
	"github.com/weftmesh/weft/control/internal/kubetest"
	"github.com/weftmesh/weft/control/internal/meshtest"
)

// weft control's injection flags: refused by name without the Kubernetes
// source or the TLS API, bad values refused at start naming the file and
// field (before the cluster is asked anything: this kubeconfig's server
// does not exist).
func TestCommandInjectFlags(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(values, []byte("inbound_port: 70000\nimage_pull_policy: sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknown, []byte("imag: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-inject"}, []string{"-inject needs the Kubernetes source"}},
		{[]string{"-inject-image", "example.com/weft:1"}, []string{"-inject-config/-inject-image need sidecar injection on"}},
		{[]string{"-kubeconfig", kc, "-inject=false", "-inject-config", values}, []string{"need sidecar injection on"}},
		{[]string{"-kubeconfig", kc, "-inject", "-insecure-api"}, []string{"-inject needs the TLS API"}},
		{[]string{"-kubeconfig", kc, "-inject-config", values}, []string{values, "inbound_port: 70000", `image_pull_policy: "sometimes"`}},
		{[]string{"-kubeconfig", kc, "-inject-config", unknown}, []string{unknown, "imag"}},
		{[]string{"-kubeconfig", kc, "-inject-image", "Weft:latest"}, []string{"-inject", "image", "lower case"}},
		{[]string{"-kubeconfig", kc, "-public-url", "http://weft-control.weft-system.svc:7070"}, []string{"control_url", "want https://"}},
		{[]string{"-inject-webhook", "weft-inject"}, []string{"-inject-webhook needs sidecar injection on"}},
		{[]string{"-kubeconfig", kc, "-inject-webhook", "weft-inject", "-tls-cert", values, "-tls-key", values}, []string{"-inject-webhook needs", "not -tls-cert"}},
		{[]string{"-kubeconfig", kc, "-inject", "-addr", "0.0.0.0:0"}, []string{"control_url", "is a listen address, not one a pod can dial; set -public-url"}},
	} {
		err := control.Command(context.Background(), append([]string{"-data", t.TempDir(), "-addr", "127.0.0.1:0"}, tc.args...), &bytes.Buffer{}, &bytes.Buffer{})
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %v, want an error containing %q", tc.args, err, w)
			}
		}
	}
}

// On only by default, injection stays off (with a warning) rather than
// refuse a start that has no URL pods could dial.
func TestCommandInjectOffWithoutURL(t *testing.T) {
	e := kubetest.Shared(t)
	kc := e.WriteKubeconfig(controlPlaneConfig(t, e))
	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- control.Command(ctx, []string{"-data", t.TempDir(), "-addr", "0.0.0.0:0", "-kubeconfig", kc, "-scrape", "0"}, &out, &errw)
	}()
	deadline := time.Now().Add(gwWait)
	for !strings.Contains(out.String(), "kubernetes "+e.URL) {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("weft control exited: %v\n%s", err, errw.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("weft control did not start: %s\n%s", out.String(), errw.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errw.String(), "sidecar injection is off") || !strings.Contains(errw.String(), `"inject":false`) {
		t.Fatalf("no warning that injection is off:\n%s", errw.String())
	}
}

// With a Kubernetes source, weft control serves /inject on its TLS API
// by default, with the values of -inject-config and -inject-image, under a
// certificate for the Service name in -public-url (what the API server
// checks against the webhook's service).
func TestCommandServesInjection(t *testing.T) {
	e := kubetest.Shared(t)
	kc := e.WriteKubeconfig(controlPlaneConfig(t, e))
	data := t.TempDir()
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("image: example.com/weft:from-file\nnative_sidecar: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := meshtest.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- control.Command(ctx, []string{"-data", data, "-addr", addr, "-kubeconfig", kc, "-scrape", "0",
			"-public-url", "https://weft-control.weft-system.svc:7070", "-inject-config", values, "-inject-image", "example.com/weft:from-flag"}, &out, &errw)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("weft control: %v\n%s", err, errw.String())
		}
	})
	deadline := time.Now().Add(gwWait)
	for !strings.Contains(out.String(), "CA bundle: ") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("weft control exited: %v\n%s", err, errw.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("weft control did not start: %s\n%s", out.String(), errw.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pem, err := os.ReadFile(filepath.Join(data, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "weft-control.weft-system.svc"}}}
	t.Cleanup(hc.CloseIdleConnections)
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"version":"v1","kind":"Pod"},` +
		`"resource":{"version":"v1","resource":"pods"},"namespace":"shop","operation":"CREATE",` +
		`"object":{"metadata":{"name":"p"},"spec":{"serviceAccountName":"cart","containers":[{"name":"app","image":"a"}]}}}}`
	resp, err := hc.Post("https://"+addr+"/inject", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST /inject (verifying the certificate for weft-control.weft-system.svc): %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &review); err != nil || resp.StatusCode != 200 || review.Response == nil || !review.Response.Allowed {
		t.Fatalf("POST /inject: %d %s %v", resp.StatusCode, b, err)
	}
	var ops []struct {
		Path  string
		Value json.RawMessage
	}
	var sidecar struct {
		Image string
		Args  []string
	}
	if err := json.Unmarshal(review.Response.Patch, &ops); err != nil || len(ops) == 0 || ops[0].Path != "/spec/containers/-" ||
		json.Unmarshal(ops[0].Value, &sidecar) != nil || sidecar.Image != "example.com/weft:from-flag" ||
		len(sidecar.Args) < 2 || sidecar.Args[1] != "--control=https://weft-control.weft-system.svc:7070" {
		t.Fatalf("the patch (a regular container, the flag's image, -public-url): %s %v", review.Response.Patch, err)
	}
}
