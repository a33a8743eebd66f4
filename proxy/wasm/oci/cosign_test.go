package oci

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCosignInterop checks the signature format against the real cosign
// CLI, both ways: cosign verifies what Sign wrote, and Verify accepts what
// cosign signed with its own key. cosign is not installed by .ci/run (it
// takes 25 minutes to build here); put it on PATH or in $WEFT_COSIGN
// (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.4.1) to run it.
func TestCosignInterop(t *testing.T) {
	bin := os.Getenv("WEFT_COSIGN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("cosign"); err != nil {
			t.Skip("cosign is not installed (set WEFT_COSIGN or put it on PATH)")
		}
	}
	reg := startRegistry(t, false)
	dir := t.TempDir()
	cosign := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "COSIGN_PASSWORD=test", "COSIGN_YES=true")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ctx := context.Background()

	// weft signs, cosign verifies.
	priv, pub := filepath.Join(dir, "weft.key"), filepath.Join(dir, "weft.pub")
	if err := GenerateKey(priv, pub); err != nil {
		t.Fatal(err)
	}
	ref := reg.host + "/f/weft-signed:v1"
	if _, err := Push(ctx, ref, fakeModule("weft"), PushOptions{}); err != nil {
		t.Fatal(err)
	}
	signer, _ := LoadPrivateKey(priv)
	if _, err := Sign(ctx, ref, signer, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if out := cosign("verify", "--key", pub, "--insecure-ignore-tlog=true", "--allow-http-registry=true", ref); !strings.Contains(out, "cosign container image signature") {
		t.Fatalf("cosign verify: %s", out)
	}

	// cosign signs with its own key, weft verifies.
	cosign("generate-key-pair", "--output-key-prefix", "native")
	ref2 := reg.host + "/f/cosign-signed:v1"
	manifest, err := Push(ctx, ref2, fakeModule("cosign"), PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cosign("sign", "--key", filepath.Join(dir, "native.key"), "--tlog-upload=false", "--allow-http-registry=true", "-y", reg.host+"/f/cosign-signed@"+manifest)
	keys, err := LoadPublicKeys(filepath.Join(dir, "native.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, reg.host+"/f/cosign-signed", manifest, keys, Source{}, 0); err != nil {
		t.Fatalf("weft verifying cosign's signature: %v", err)
	}
	other, _ := LoadPublicKeys(pub)
	if err := Verify(ctx, reg.host+"/f/cosign-signed", manifest, other, Source{}, 0); err == nil {
		t.Fatal("cosign's signature verified with another key")
	}
}
