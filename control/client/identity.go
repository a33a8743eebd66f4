package client

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/proxy/identity"
)

// IdentityClient asks the control plane's CA for certificates and trust
// bundles; it is the sidecar's identity.Signer. The join token proves the
// node id once, for the first certificate; renewals are authenticated by
// the node's current certificate (HTTP must present Source's SVID:
// TLSConfig does). The control plane decides the identity from the node's
// Sidecar resource.
type IdentityClient struct {
	// URL is the control plane's base URL, or several replicas' separated
	// by commas: a replica that cannot be reached (or answers 5xx) is left
	// for the next one.
	URL    string
	NodeID string
	// Token is the node's join token (weft ctl token NODE, or POST
	// /v1/tokens); single-use unless minted for more uses.
	Token string
	// TokenFile, when set, is read for the token at every join instead:
	// a Kubernetes projected service-account token, which the kubelet
	// rotates in place.
	TokenFile string
	// Source is the identity being renewed: while it holds a certificate
	// that has not expired, the token is not sent.
	Source *identity.Source
	// HTTP is the client to use (default: one with a 10s timeout).
	HTTP *http.Client

	once sync.Once
	def  *http.Client
	// good is the index of the replica that answered last.
	good atomic.Int32
}

type certificateRequest struct {
	Node string `json:"node"`
	CSR  string `json:"csr"`
}

type bundleResponse struct {
	TrustDomain string `json:"trust_domain"`
	Bundle      string `json:"bundle"`
	Version     string `json:"bundle_version"`
	Signer      string `json:"signer"`
}

type certificateResponse struct {
	SpiffeID string `json:"spiffe_id"`
	Chain    string `json:"chain"`
	bundleResponse
}

func (c *IdentityClient) client() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	c.once.Do(func() { c.def = &http.Client{Timeout: 10 * time.Second} })
	return c.def
}

// current is the Source's SVID while it is valid, else nil.
func (c *IdentityClient) current() *identity.SVID {
	if c.Source == nil {
		return nil
	}
	if v := c.Source.SVID(); v != nil && time.Now().Before(v.NotAfter) {
		return v
	}
	return nil
}

// Sign implements identity.Signer: POST /v1/certificate.
func (c *IdentityClient) Sign(ctx context.Context, csrDER []byte) (*identity.Issued, error) {
	body, _ := json.Marshal(certificateRequest{Node: c.NodeID, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))})
	hdr := http.Header{"Content-Type": {"application/json"}}
	if v := c.current(); v == nil {
		tok := c.Token
		if c.TokenFile != "" {
			b, err := os.ReadFile(c.TokenFile)
			if err != nil {
				return nil, fmt.Errorf("certificate for node %s: join token: %w", c.NodeID, err)
			}
			tok = strings.TrimSpace(string(b))
		}
		if tok != "" {
			hdr.Set("Authorization", "Bearer "+tok)
		}
	}
	var cr certificateResponse
	if err := c.do(ctx, http.MethodPost, "/v1/certificate", hdr, body, &cr); err != nil {
		return nil, fmt.Errorf("certificate for node %s: %w", c.NodeID, err)
	}
	// Connections opened before this certificate do not present it: the
	// next calls (a renewal) must open new ones.
	c.client().CloseIdleConnections()
	certs, err := identity.ParseCertsPEM([]byte(cr.Chain))
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("certificate for node %s: bad chain: %v", c.NodeID, err)
	}
	b, err := identity.ParseBundlePEM(cr.TrustDomain, []byte(cr.Bundle))
	if err != nil {
		return nil, fmt.Errorf("certificate for node %s: %w", c.NodeID, err)
	}
	is := &identity.Issued{Bundle: b, Signer: cr.Signer}
	for _, ct := range certs {
		is.Chain = append(is.Chain, ct.Raw)
	}
	return is, nil
}

// FetchBundle implements identity.Signer: GET /v1/bundle.
func (c *IdentityClient) FetchBundle(ctx context.Context) (*identity.Bundle, string, error) {
	var br bundleResponse
	if err := c.do(ctx, http.MethodGet, "/v1/bundle", nil, nil, &br); err != nil {
		return nil, "", fmt.Errorf("trust bundle: %w", err)
	}
	b, err := identity.ParseBundlePEM(br.TrustDomain, []byte(br.Bundle))
	if err != nil {
		return nil, "", err
	}
	return b, br.Signer, nil
}

// do sends the request to the replica that answered last, then to the
// others in turn while they cannot be reached or answer 5xx.
func (c *IdentityClient) do(ctx context.Context, method, path string, hdr http.Header, body []byte, into any) error {
	urls, err := SplitURLs(c.URL)
	if err != nil {
		return err
	}
	first := int(c.good.Load()) % len(urls)
	var errs []error
	for i := range urls {
		n := (first + i) % len(urls)
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, urls[n]+path, rd)
		if err != nil {
			return err
		}
		maps.Copy(req.Header, hdr)
		err = c.doOne(req, into)
		var se *StatusError
		if err == nil || ctx.Err() != nil || (errors.As(err, &se) && se.Status < 500) {
			c.good.Store(int32(n))
			return err
		}
		errs = append(errs, fmt.Errorf("%s: %w", urls[n], err))
	}
	if len(errs) == 1 {
		return errors.Unwrap(errs[0])
	}
	return errors.Join(errs...)
}

func (c *IdentityClient) doOne(req *http.Request, into any) error {
	resp, err := c.client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		if e.Error == "" {
			e.Error = string(bytes.TrimSpace(b))
		}
		return &StatusError{Status: resp.StatusCode, Msg: e.Error}
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	return nil
}

// StatusError is a refused identity request.
type StatusError struct {
	Status int
	Msg    string
}

// Error is "status N: message".
func (e *StatusError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Msg) }

// IsStatus reports whether err is a StatusError with that status.
func IsStatus(err error, status int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == status
}
