package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func keyPair(t *testing.T) (priv, pub string) {
	t.Helper()
	dir := t.TempDir()
	priv, pub = filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub")
	if err := GenerateKey(priv, pub); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", fi.Mode(), err)
	}
	return priv, pub
}

func TestSignVerify(t *testing.T) {
	reg := startRegistry(t, false)
	ref := reg.host + "/filters/s:v1"
	manifest, err := Push(context.Background(), ref, fakeModule("signed"), PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repo := reg.host + "/filters/s"
	privA, pubA := keyPair(t)
	_, pubB := keyPair(t)
	keysA, err := LoadPublicKeys(pubA)
	if err != nil {
		t.Fatal(err)
	}
	keysB, _ := LoadPublicKeys(pubB)

	if err := Verify(context.Background(), repo, manifest, keysA, Source{}, 0); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned: %v", err)
	}
	signer, err := LoadPrivateKey(privA)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Sign(context.Background(), ref, signer, PushOptions{})
	if err != nil || got != manifest {
		t.Fatalf("sign: %s %v", got, err)
	}
	if err := Verify(context.Background(), repo, manifest, keysA, Source{}, 0); err != nil {
		t.Fatalf("verify with the signer's key: %v", err)
	}
	err = Verify(context.Background(), repo, manifest, keysB, Source{}, 0)
	if err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("verify with another key: %v", err)
	}
	// A second signature (key B) sits beside the first; either key verifies.
	privB := strings.TrimSuffix(pubB, ".pub") + ".key"
	sB, _ := LoadPrivateKey(privB)
	if _, err := Sign(context.Background(), ref, sB, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(context.Background(), repo, manifest, keysB, Source{}, 0); err != nil {
		t.Fatalf("second signature: %v", err)
	}
	if err := Verify(context.Background(), repo, manifest, keysA, Source{}, 0); err != nil {
		t.Fatalf("first signature lost: %v", err)
	}
	// A signature of the old manifest does not cover a new push to the tag.
	m2, err := Push(context.Background(), ref, fakeModule("unsigned v2"), PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(context.Background(), repo, m2, keysA, Source{}, 0); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("new manifest: %v", err)
	}
}

// A signature made for one digest and copied onto another's .sig tag is
// refused: the payload names the digest it signs.
func TestCopiedSignatureIsRefused(t *testing.T) {
	reg := startRegistry(t, false)
	priv, pub := keyPair(t)
	signer, _ := LoadPrivateKey(priv)
	keys, _ := LoadPublicKeys(pub)
	good, _ := Push(context.Background(), reg.host+"/f/a:v1", fakeModule("good"), PushOptions{})
	evil, _ := Push(context.Background(), reg.host+"/f/a:v2", fakeModule("evil"), PushOptions{})
	if _, err := Sign(context.Background(), reg.host+"/f/a:v1", signer, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	repo, _ := name.NewRepository(reg.host + "/f/a")
	goodTag, _ := SignatureTag(repo, good)
	evilTag, _ := SignatureTag(repo, evil)
	img, err := remote.Image(goodTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(evilTag, img); err != nil {
		t.Fatal(err)
	}
	err = Verify(context.Background(), repo.Name(), evil, keys, Source{}, 0)
	if err == nil || !strings.Contains(err.Error(), "signs "+good) {
		t.Fatalf("copied signature: %v", err)
	}
}

func TestGarbageSignaturesAreRefusals(t *testing.T) {
	_, pub := keyPair(t)
	keys, _ := LoadPublicKeys(pub)
	manifest := "sha256:" + strings.Repeat("a", 64)
	for _, c := range []struct {
		payload, sig, mt, want string
	}{
		{`{}`, "!!!", SimpleSigningMediaType, "not a base64 signature"},
		{`not json`, base64.StdEncoding.EncodeToString([]byte("x")), SimpleSigningMediaType, "not simple-signing JSON"},
		{`{"critical":{"type":"other"}}`, base64.StdEncoding.EncodeToString([]byte("x")), SimpleSigningMediaType, "payload type"},
		{`{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"` + manifest + `"}}}`, base64.StdEncoding.EncodeToString([]byte("garbage")), SimpleSigningMediaType, "does not verify"},
		{`{}`, "", "application/octet-stream", "media type"},
	} {
		err := verifyImage(sigImage(t, c.payload, c.sig, c.mt), manifest, keys, "test")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("payload %q sig %q: %v, want %q", c.payload, c.sig, err, c.want)
		}
	}
}

func sigImage(t testing.TB, payload, sig, mt string) v1.Image {
	t.Helper()
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:       static.NewLayer([]byte(payload), types.MediaType(mt)),
		Annotations: map[string]string{SignatureAnnotation: sig},
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Keys of every type cosign uses verify what they sign, and only that.
func TestKeyTypes(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	for i, k := range []interface {
		Public() crypto.PublicKey
	}{rsaKey, edKey} {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		pubDER, _ := x509.MarshalPKIXPublicKey(k.Public())
		priv, pub := filepath.Join(dir, fmt.Sprint(i, ".key")), filepath.Join(dir, fmt.Sprint(i, ".pub"))
		os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
		signer, err := LoadPrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := LoadPublicKeys(pub)
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(`{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:x"},"type":"cosign container image signature"},"optional":null}`)
		sig, err := signPayload(signer, body)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyImage(sigImage(t, string(body), base64.StdEncoding.EncodeToString(sig), SimpleSigningMediaType), "sha256:x", keys, "t"); err != nil {
			t.Errorf("%T: %v", k, err)
		}
		sig[len(sig)/2] ^= 1
		if err := verifyImage(sigImage(t, string(body), base64.StdEncoding.EncodeToString(sig), SimpleSigningMediaType), "sha256:x", keys, "t"); err == nil {
			t.Errorf("%T: a flipped bit verified", k)
		}
	}
	bad := filepath.Join(dir, "bad.pub")
	os.WriteFile(bad, []byte("not pem"), 0o644)
	if _, err := LoadPublicKeys(bad); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Errorf("bad key file: %v", err)
	}
	if _, err := LoadPrivateKey(bad); err == nil {
		t.Error("bad private key loaded")
	}
}

// FuzzVerifyImage: whatever a signature image holds, verifying it is a
// refusal or (never, without the key) a success — not a crash.
func FuzzVerifyImage(f *testing.F) {
	f.Add(`{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"sha256:x"}}}`, "MEUCIQ==", SimpleSigningMediaType)
	f.Add(`{}`, "", "")
	f.Add(`{"critical":null}`, "////", SimpleSigningMediaType)
	dir := f.TempDir()
	if err := GenerateKey(filepath.Join(dir, "k"), filepath.Join(dir, "k.pub")); err != nil {
		f.Fatal(err)
	}
	keys, _ := LoadPublicKeys(filepath.Join(dir, "k.pub"))
	f.Fuzz(func(t *testing.T, payload, sig, mt string) {
		if err := verifyImage(sigImage(t, payload, sig, mt), "sha256:x", keys, "fuzz"); err == nil {
			t.Fatalf("a signature verified without the private key: %q %q", payload, sig)
		}
	})
}

// FuzzFileFromTar: a layer's bytes never crash the reader or exceed the limit.
func FuzzFileFromTar(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "plugin.wasm", Size: 8, Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Write(fakeModule(""))
	tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := fileFromTar(bytes.NewReader(b), ImageFile, 1024)
		if err == nil && len(out) > 1024 {
			t.Fatalf("read %d bytes past the limit", len(out))
		}
	})
}
