package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/proxy/identity"
)

// meshIdentity starts the SVID rotation for a sidecar with a join token
// and waits (bounded) for the first certificate. It returns nil when no
// token is given.
func meshIdentity(ctx context.Context, controlURL, node, token, tokenFile string, bundlePoll time.Duration, log *zap.Logger) (*identity.Source, error) {
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("proxy: --join-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, nil
	}
	if controlURL == "" || node == "" {
		return nil, errors.New("proxy: a join token needs --control URL and --node ID")
	}
	src := identity.NewSource()
	ic := &client.IdentityClient{URL: controlURL, NodeID: node, Token: token}
	go func() {
		_ = src.Rotate(ctx, identity.RotateOptions{Signer: ic, Logger: log.Named("identity"), BundleInterval: bundlePoll})
	}()
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case <-src.Ready():
		log.Info("mesh identity ready", zap.String("spiffe_id", src.SVID().ID), zap.Time("expires", src.SVID().NotAfter))
		return src, nil
	case <-wait.Done():
		return nil, errors.New("proxy: no certificate from the control plane within 30s (is the join token right, and is there a Sidecar resource for this node?)")
	}
}
