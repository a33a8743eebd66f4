package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/proxy/identity"
)

// controlIdentity is how a sidecar reaches the control plane: the TLS
// config for its API (nil for an http:// URL) and the mesh identity
// (nil without a control plane).
type controlIdentity struct {
	tls *tls.Config
	src *identity.Source
}

// meshIdentity joins the control plane: with an https URL it trusts the
// CA bundle in caFile, spends the join token on the node's first
// certificate, keeps it renewed over mTLS, and waits (bounded) for it.
// An http:// URL is a control plane run with -insecure-api: no TLS, no
// identity.
func meshIdentity(ctx context.Context, controlURL, node, caFile, token, tokenFile string, bundlePoll time.Duration, log *zap.Logger) (controlIdentity, error) {
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return controlIdentity{}, fmt.Errorf("proxy: --join-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if controlURL == "" {
		if token != "" || caFile != "" {
			return controlIdentity{}, errors.New("proxy: a join token and --control-ca need --control URL and --node ID")
		}
		return controlIdentity{}, nil
	}
	urls, err := client.SplitURLs(controlURL)
	if err != nil {
		return controlIdentity{}, fmt.Errorf("proxy: --control: %w", err)
	}
	plain := 0
	for _, u := range urls {
		if strings.HasPrefix(u, "http://") {
			plain++
		}
	}
	if plain > 0 && plain < len(urls) {
		return controlIdentity{}, errors.New("proxy: --control mixes http:// and https:// replicas; give the same scheme for all")
	}
	if plain > 0 {
		if token != "" {
			return controlIdentity{}, errors.New("proxy: a join token is sent only over https; this --control URL is plain http")
		}
		log.Warn("the control plane URL is plain http (its API runs with -insecure-api): nothing authenticates it")
		return controlIdentity{}, nil
	}
	if caFile == "" {
		return controlIdentity{}, errors.New("proxy: --control-ca FILE is required with an https --control URL: the control plane's DATA/ca.pem (weft ctl ca-cert fetches it)")
	}
	roots, err := client.LoadCA(caFile)
	if err != nil {
		return controlIdentity{}, fmt.Errorf("proxy: --control-ca: %w", err)
	}
	if token == "" {
		return controlIdentity{}, fmt.Errorf("proxy: --join-token-file is required: the sidecar joins with a join token for node %s (weft ctl token %s)", node, node)
	}
	src := identity.NewSource()
	tc := client.TLSConfig(roots, src)
	ic := &client.IdentityClient{URL: controlURL, NodeID: node, Token: token, TokenFile: tokenFile, Source: src,
		HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.Clone()}}}
	go func() {
		_ = src.Rotate(ctx, identity.RotateOptions{Signer: ic, Logger: log.Named("identity"), BundleInterval: bundlePoll})
	}()
	// Wait a little for the first certificate; past that the sidecar
	// starts anyway (serving its cached snapshot if the control plane is
	// down) and keeps trying.
	wait, cancel := context.WithTimeout(ctx, firstCertWait)
	defer cancel()
	select {
	case <-src.Ready():
		log.Info("mesh identity ready", zap.String("spiffe_id", src.SVID().ID), zap.Time("expires", src.SVID().NotAfter))
	case <-wait.Done():
		if ctx.Err() != nil {
			return controlIdentity{}, ctx.Err()
		}
		log.Warn("no certificate from the control plane yet; starting without it and retrying (is the join token right, unused and unexpired, is there a Sidecar resource for this node, and is --control-ca the control plane's ca.pem? the control plane's log says why it refused)",
			zap.Duration("waited", firstCertWait))
	}
	return controlIdentity{tls: tc, src: src}, nil
}

// firstCertWait is how long weft proxy waits for its first certificate
// before starting without it.
const firstCertWait = 10 * time.Second
