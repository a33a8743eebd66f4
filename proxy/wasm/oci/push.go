package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Layouts Push can write.
const (
	LayoutWasm  = "wasm"  // one application/vnd.module.wasm.content.layer.v1+wasm layer
	LayoutImage = "image" // one gzip tar layer holding plugin.wasm
)

// PushOptions configure Push.
type PushOptions struct {
	Layout     string // LayoutWasm (default) or LayoutImage
	PullSecret string // credentials, as for Source
	CAFile     string
	Timeout    time.Duration // default 60s
}

// Push writes module to ref in the chosen layout and returns the manifest
// digest ("sha256:HEX").
func Push(ctx context.Context, ref string, module []byte, o PushOptions) (string, error) {
	if !bytes.HasPrefix(module, []byte("\x00asm")) {
		return "", fmt.Errorf("push %s: not a Wasm module (no \\0asm header)", ref)
	}
	img, err := Image(module, o.Layout)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	r, pinned, err := ParseRef(ref)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	if pinned != nil || isDigest(r) {
		return "", fmt.Errorf("push %s: push to a tag, not a digest", ref)
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	opts, err := remoteOptions(ctx, Source{PullSecret: o.PullSecret, CAFile: o.CAFile})
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// Image builds the OCI image of module in the given layout.
func Image(module []byte, layout string) (v1.Image, error) {
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	switch layout {
	case "", LayoutWasm:
		base = mutate.ConfigMediaType(base, MediaTypeWasmConfig)
		return mutate.AppendLayers(base, static.NewLayer(module, MediaTypeWasmLayer))
	case LayoutImage:
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(&tar.Header{Name: ImageFile, Mode: 0o644, Size: int64(len(module)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(module); err != nil {
			return nil, err
		}
		if err := tw.Close(); err != nil {
			return nil, err
		}
		tarBytes := buf.Bytes()
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(tarBytes)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		return mutate.AppendLayers(base, layer)
	}
	return nil, fmt.Errorf("layout %q is not %s or %s", layout, LayoutWasm, LayoutImage)
}
