package ctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/client"
	"github.com/weftmesh/weft/control/server"
	"github.com/weftmesh/weft/proxy/identity"
)

// tlsConfig trusts caFile (else the system roots) and presents the
// client certificate, if given.
func tlsConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		roots, err := client.LoadCA(caFile)
		if err != nil {
			return nil, fmt.Errorf("ctl: -ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		for _, r := range roots {
			tc.RootCAs.AddCert(r)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("ctl: give both -cert and -key, or neither")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("ctl: -cert/-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// hint says what to fix after a failed connection.
func (c *cli) hint(err error) string {
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &ua) && c.caFile == "":
		return "the server's certificate is from the mesh CA: set -ca DATA/ca.pem or $WEFT_CA (weft ctl ca-cert fetches it)"
	case errors.As(err, &ua):
		return "the server's certificate does not chain to " + c.caFile + ": is it this control plane's ca.pem?"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "the control plane serves plain HTTP (-insecure-api): use an http:// -server URL"
	}
	return "is the control plane at " + c.base + "? set -server or $WEFT_SERVER"
}

// joinToken mints a join token for a node (POST /v1/tokens).
func (c *cli) joinToken(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(c.errw)
	ttl := fs.Duration("ttl", 0, "how long the token is valid (default: the server's -join-token-ttl, 1h)")
	uses := fs.Int("uses", 1, "how many certificates the token may obtain")
	pos, err := interleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("token: usage: token NODE [-ttl 1h] [-uses 1]")
	}
	req := server.TokenRequest{Node: pos[0], Uses: *uses}
	if *ttl != 0 {
		req.TTL = ttl.String()
	}
	body, _ := json.Marshal(req)
	var tr server.TokenResponse
	if _, err := c.do(ctx, "POST", "/v1/tokens", body, map[string]string{"Content-Type": "application/json"}, &tr); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(c.out, tr.Token)
	fmt.Fprintf(c.errw, "join token for node %s: valid until %s for %d certificate(s); shown once\n", tr.Node, tr.ExpiresAt.Local().Format(time.RFC3339), tr.Uses)
	return nil
}

// fetchCA fetches the CA bundle from the server before the client trusts
// anything, as kubeadm join does with --discovery-token-ca-cert-hash: the
// bundle must contain a root whose fingerprint the operator got from the
// control plane's start-up output, and the server's own certificate must
// chain to that bundle.
func fetchCA(ctx context.Context, base string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ca-cert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fp := fs.String("fingerprint", "", "sha256:HEX of the root, as weft control printed it (required)")
	out := fs.String("o", "", "write the bundle to this file (default stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	want := strings.ToLower(strings.TrimSpace(*fp))
	if !strings.HasPrefix(want, "sha256:") || len(want) != len("sha256:")+64 {
		return errors.New("ca-cert: -fingerprint: want sha256: and 64 hex digits, as weft control printed it (ca_fingerprint)")
	}
	var served []*x509.Certificate
	tc := &tls.Config{MinVersion: tls.VersionTLS12,
		// Nothing is trusted yet: the answer is checked against the
		// fingerprint, and the server's chain against the answer, below.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			served = cs.PeerCertificates
			return nil
		}}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/ca.pem", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("ca-cert: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ca-cert: GET /v1/ca.pem: status %d %v", resp.StatusCode, err)
	}
	roots, err := identity.ParseCertsPEM(b)
	if err != nil || len(roots) == 0 {
		return fmt.Errorf("ca-cert: the answer is not a PEM bundle: %v", err)
	}
	if !slices.ContainsFunc(roots, func(r *x509.Certificate) bool { return ca.Fingerprint(r) == want }) {
		return fmt.Errorf("ca-cert: no root in the served bundle has fingerprint %s: refusing it (wrong server, or someone in between)", want)
	}
	if len(served) == 0 {
		return errors.New("ca-cert: the server presented no certificate")
	}
	opts := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool()}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	for _, ic := range served[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := served[0].Verify(opts); err != nil {
		return fmt.Errorf("ca-cert: the server's certificate does not chain to the bundle it served: %w", err)
	}
	if *out == "" {
		_, err = stdout.Write(b)
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return fmt.Errorf("ca-cert: %w", err)
	}
	fmt.Fprintf(stderr, "wrote %s (%d roots); use it with -ca %s or WEFT_CA=%s\n", *out, len(roots), *out, *out)
	return nil
}
