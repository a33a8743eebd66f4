package oci

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// cosign's key-based signature format.
const (
	// SimpleSigningMediaType is the media type of a signature layer.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SignatureAnnotation holds the base64 signature over the layer.
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
	signatureType       = "cosign container image signature"
	maxPayloadBytes     = 64 << 10
	maxSignatures       = 64
)

// payload is the simple-signing document a signature covers.
type payload struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// SignatureTag is where cosign keeps the signatures of manifest digest d
// ("sha256:HEX" → "sha256-HEX.sig") in repository repo.
func SignatureTag(repo name.Repository, manifest string) (name.Tag, error) {
	alg, hexd, ok := strings.Cut(manifest, ":")
	if !ok {
		return name.Tag{}, fmt.Errorf("manifest digest %q is not ALG:HEX", manifest)
	}
	return repo.Tag(alg + "-" + hexd + ".sig"), nil
}

// Sign signs the manifest ref resolves to with key and appends the
// signature to the reference's signature image. It returns the manifest
// digest signed.
func Sign(ctx context.Context, ref string, key crypto.Signer, o PushOptions) (string, error) {
	r, _, err := ParseRef(ref)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", ref, err)
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	opts, err := remoteOptions(ctx, Source{PullSecret: o.PullSecret, CAFile: o.CAFile})
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", ref, err)
	}
	d, err := remote.Head(r, opts...)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", ref, err)
	}
	var pl payload
	pl.Critical.Identity.DockerReference = r.Context().Name()
	pl.Critical.Image.DockerManifestDigest = d.Digest.String()
	pl.Critical.Type = signatureType
	body, err := json.Marshal(pl)
	if err != nil {
		return "", err
	}
	sig, err := signPayload(key, body)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", ref, err)
	}
	tag, err := SignatureTag(r.Context(), d.Digest.String())
	if err != nil {
		return "", err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	if old, err := remote.Image(tag, opts...); err == nil {
		base = old // more signatures beside the ones there, as cosign does
	} else if !isNotFound(err) {
		return "", fmt.Errorf("sign %s: reading %s: %w", ref, tag, err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(body, SimpleSigningMediaType),
		Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return "", fmt.Errorf("sign %s: writing %s: %w", ref, tag, err)
	}
	return d.Digest.String(), nil
}

func signPayload(key crypto.Signer, body []byte) ([]byte, error) {
	switch key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, body, crypto.Hash(0))
	case *ecdsa.PublicKey, *rsa.PublicKey:
		h := sha256.Sum256(body)
		return key.Sign(rand.Reader, h[:], crypto.SHA256)
	}
	return nil, fmt.Errorf("key type %T is not ECDSA, RSA or Ed25519", key.Public())
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == 404
}

// ErrUnsigned is returned (wrapped) when no signature exists at all.
var ErrUnsigned = errors.New("module is not signed")

// Verify checks that the manifest digest of repo carries at least one
// signature, in cosign's format, by one of keys. It returns nil or an
// error that says what was found.
func Verify(ctx context.Context, repo, manifest string, keys []crypto.PublicKey, src Source, timeout time.Duration) error {
	if len(keys) == 0 {
		return errors.New("verify: no public keys configured")
	}
	r, err := name.NewRepository(repo)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	tag, err := SignatureTag(r, manifest)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	opts, err := remoteOptions(ctx, src)
	if err != nil {
		return err
	}
	img, err := remote.Image(tag, opts...)
	if isNotFound(err) {
		return fmt.Errorf("%w: no signature image %s", ErrUnsigned, tag)
	}
	if err != nil {
		return fmt.Errorf("verify: reading %s: %w", tag, err)
	}
	return verifyImage(img, manifest, keys, tag.String())
}

func verifyImage(img v1.Image, manifest string, keys []crypto.PublicKey, where string) error {
	man, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("verify: %s: %w", where, err)
	}
	if len(man.Layers) > maxSignatures {
		return fmt.Errorf("verify: %s holds %d signatures, more than %d", where, len(man.Layers), maxSignatures)
	}
	var why []string
	for i, l := range man.Layers {
		err := verifyLayer(img, l, manifest, keys)
		if err == nil {
			return nil
		}
		why = append(why, fmt.Sprintf("signature %d: %v", i, err))
	}
	if len(why) == 0 {
		return fmt.Errorf("%w: %s holds no signature", ErrUnsigned, where)
	}
	return fmt.Errorf("no valid signature of %s by a configured key (%s)", manifest, strings.Join(why, "; "))
}

func verifyLayer(img v1.Image, l v1.Descriptor, manifest string, keys []crypto.PublicKey) error {
	if l.MediaType != SimpleSigningMediaType {
		return fmt.Errorf("media type %s, want %s", l.MediaType, SimpleSigningMediaType)
	}
	if l.Size > maxPayloadBytes {
		return fmt.Errorf("payload of %d bytes is over %d", l.Size, maxPayloadBytes)
	}
	sig, err := base64.StdEncoding.DecodeString(l.Annotations[SignatureAnnotation])
	if err != nil || len(sig) == 0 {
		return fmt.Errorf("annotation %s is not a base64 signature", SignatureAnnotation)
	}
	layer, err := img.LayerByDigest(l.Digest)
	if err != nil {
		return err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxPayloadBytes+1))
	if err != nil {
		return err
	}
	var pl payload
	if err := json.Unmarshal(body, &pl); err != nil {
		return fmt.Errorf("payload is not simple-signing JSON: %v", err)
	}
	if pl.Critical.Type != signatureType {
		return fmt.Errorf("payload type %q, want %q", pl.Critical.Type, signatureType)
	}
	if pl.Critical.Image.DockerManifestDigest != manifest {
		return fmt.Errorf("signs %s, not %s", pl.Critical.Image.DockerManifestDigest, manifest)
	}
	for _, k := range keys {
		if verifySig(k, body, sig) {
			return nil
		}
	}
	return errors.New("signature does not verify with any configured key")
}

func verifySig(k crypto.PublicKey, body, sig []byte) bool {
	h := sha256.Sum256(body)
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, h[:], sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(k, body, sig)
	}
	return false
}

// LoadPublicKeys reads PEM public keys (PKIX "PUBLIC KEY" blocks, as in
// cosign.pub); a file may hold several.
func LoadPublicKeys(files ...string) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		ks, err := ParsePublicKeys(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		keys = append(keys, ks...)
	}
	return keys, nil
}

// ParsePublicKeys parses the PEM "PUBLIC KEY" blocks of b (at least one):
// ECDSA, RSA or Ed25519 keys.
func ParsePublicKeys(b []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		switch k.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		default:
			return nil, fmt.Errorf("key type %T is not ECDSA, RSA or Ed25519", k)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM \"PUBLIC KEY\" block")
	}
	return keys, nil
}

// LoadPrivateKey reads an unencrypted PEM private key (PKCS#8 "PRIVATE
// KEY" or SEC 1 "EC PRIVATE KEY").
func LoadPrivateKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM private key (PRIVATE KEY or EC PRIVATE KEY); an encrypted cosign key must be exported first", file)
		}
		switch blk.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("%s: key type %T cannot sign", file, k)
			}
			return s, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			return k, nil
		}
	}
}

// GenerateKey writes a new ECDSA P-256 key pair (PKCS#8 private key with
// mode 0600, PKIX public key), the key type cosign generates.
func GenerateKey(privFile, pubFile string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(privFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}
