package server

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/kube"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/store"
	"github.com/weftmesh/weft/proxy/identity"
)

// TokenRequest asks for a node's join token (POST /v1/tokens).
type TokenRequest struct {
	Node string `json:"node"`
	// TTL is how long the token is valid, e.g. "1h" (default: the
	// server's -join-token-ttl).
	TTL string `json:"ttl,omitempty"`
	// Uses is how many certificates the token may obtain (default 1).
	Uses int `json:"uses,omitempty"`
}

// TokenResponse carries a new join token; it is shown once.
type TokenResponse struct {
	Node      string    `json:"node"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	Uses      int       `json:"uses"`
}

// CertificateRequest is a sidecar's CSR (POST /v1/certificate): the
// first with "Authorization: Bearer JOIN-TOKEN", renewals over mTLS with
// the node's current certificate.
type CertificateRequest struct {
	Node string `json:"node"`
	// CSR is a PEM "CERTIFICATE REQUEST".
	CSR string `json:"csr"`
}

// CertificateResponse is an issued SVID.
type CertificateResponse struct {
	SpiffeID string `json:"spiffe_id"`
	// Chain is the leaf then any intermediate, PEM.
	Chain     string    `json:"chain"`
	ExpiresAt time.Time `json:"expires_at"`
	BundleResponse
}

// BundleResponse is the trust bundle (GET /v1/bundle).
type BundleResponse struct {
	TrustDomain string `json:"trust_domain"`
	// Bundle is the trusted roots, PEM: the current root first, then
	// retired roots still in their overlap.
	Bundle string `json:"bundle"`
	// Version changes when the roots change.
	Version string `json:"bundle_version"`
	// Signer names the root that signs new certificates.
	Signer string `json:"signer"`
}

func (s *Server) identityRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/tokens", s.guard(admin, s.handleToken))
	mux.HandleFunc("POST /v1/certificate", s.guard(public, s.handleCertificate))
	mux.HandleFunc("GET /v1/bundle", s.guard(public, s.handleBundle))
	mux.HandleFunc("GET /v1/ca.pem", s.guard(public, s.handleCAFile))
	mux.HandleFunc("POST /v1/ca/rotate", s.guard(admin, s.handleRotate))
}

// CA is the certificate authority.
func (s *Server) CA() *ca.CA { return s.ca }

// IssueToken makes a new join token for node (what POST /v1/tokens does),
// valid ttl (0: the server's default) for uses certificates (0: one).
func (s *Server) IssueToken(node string, ttl time.Duration, uses int, who string) (TokenResponse, error) {
	if ttl == 0 {
		ttl = s.o.JoinTokenTTL
	}
	tok, exp, err := s.tokens.Issue(node, ttl, uses)
	res, msg := "applied", ""
	if err != nil {
		res, msg = "refused", err.Error()
	}
	_ = s.audit.Write(store.AuditEntry{Time: time.Now().UTC(), Who: who, Source: "api", Action: "issue-join-token",
		Resources: []string{"node " + node}, Revision: s.store.Revision(), Result: res, Error: msg})
	if err != nil {
		return TokenResponse{}, err
	}
	return TokenResponse{Node: node, Token: tok, ExpiresAt: exp, Uses: max(uses, 1)}, nil
}

// maxRequestBody bounds the JSON bodies of identity requests.
const maxRequestBody = 64 << 10

// decodeTokenRequest reads a join token request and its TTL (0: the
// server's default). Errors name the field at fault ("body" when the JSON
// itself is bad).
func decodeTokenRequest(body io.Reader) (TokenRequest, time.Duration, error) {
	const form = `body must be {"node": "NODE-ID"[, "ttl": "1h"][, "uses": 1]}`
	var req TokenRequest
	if err := json.NewDecoder(io.LimitReader(body, maxRequestBody)).Decode(&req); err != nil {
		return req, 0, jsonFieldError(err, form)
	}
	if req.Node == "" {
		return req, 0, errors.New("node: required; " + form)
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return req, 0, fmt.Errorf("ttl: %q is not a duration such as 1h", req.TTL)
		}
		ttl = d
	}
	return req, ttl, nil
}

// decodeCertificateRequest reads a certificate request. Errors name the
// field at fault ("body" when the JSON itself is bad). The CSR's PEM is
// checked later, after the caller's authority over the node.
func decodeCertificateRequest(body io.Reader) (CertificateRequest, error) {
	const form = `body must be {"node": "NODE-ID", "csr": "PEM"}`
	var req CertificateRequest
	if err := json.NewDecoder(io.LimitReader(body, maxRequestBody)).Decode(&req); err != nil {
		return req, jsonFieldError(err, form)
	}
	if req.Node == "" {
		return req, errors.New("node: required; " + form)
	}
	if req.CSR == "" {
		return req, errors.New("csr: required; " + form)
	}
	return req, nil
}

// jsonFieldError turns a JSON decoding error into one that names the
// field (a member of the wrong type) or else the body.
func jsonFieldError(err error, form string) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("%s: must be a JSON %s, not %s; %s", te.Field, te.Type, te.Value, form)
	}
	return fmt.Errorf("body: %v; %s", err, form)
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	req, ttl, err := decodeTokenRequest(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	tr, err := s.IssueToken(req.Node, ttl, req.Uses, who(r))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, tr)
}

func (s *Server) bundle() BundleResponse {
	roots, signer := s.ca.Bundle()
	b := identity.NewBundle(s.ca.TrustDomain(), roots)
	return BundleResponse{TrustDomain: s.ca.TrustDomain(), Bundle: string(identity.EncodeCertsPEM(roots...)), Version: b.Version, Signer: signer}
}

// handleCAFile serves the CA bundle as PEM (what DATA/ca.pem holds), for
// a first fetch pinned by fingerprint (weft ctl ca-cert).
func (s *Server) handleCAFile(w http.ResponseWriter, r *http.Request) {
	roots, _ := s.ca.Bundle()
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(identity.EncodeCertsPEM(roots...))
}

func (s *Server) handleBundle(w http.ResponseWriter, r *http.Request) {
	b := s.bundle()
	etag := `"` + b.Version + "-" + b.Signer + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// handleCertificate signs a node's CSR. The caller proves it is the node
// either with the certificate the CA issued to that node (a renewal, over
// mTLS) or with a live join token for that node, which this spends. The
// identity comes from the node's Sidecar resource (namespace and service
// account), never from the CSR, and a CSR naming another identity is
// refused.
func (s *Server) handleCertificate(w http.ResponseWriter, r *http.Request) {
	if s.o.Insecure {
		writeError(w, http.StatusForbidden, "certificates are issued only over the TLS API; this control plane runs with -insecure-api")
		return
	}
	req, err := decodeCertificateRequest(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	c := callerOf(r)
	if c.Kind == "node" && c.Name != req.Node {
		s.refuse(w, r, c, &authError{http.StatusForbidden, fmt.Sprintf("%s may only renew its own certificate, not node %q's", c, req.Node)})
		return
	}
	sc := s.store.Mesh().SidecarOf(req.Node)
	if sc == nil {
		s.refuse(w, r, c, &authError{http.StatusForbidden, "node " + req.Node + " has no Sidecar resource: its identity is unknown"})
		return
	}
	blk, _ := pem.Decode([]byte(req.CSR))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		writeError(w, http.StatusBadRequest, "csr: must be a PEM CERTIFICATE REQUEST")
		return
	}
	id := mesh.WorkloadID(s.ca.TrustDomain(), sc)
	var is *ca.Issued
	sign := func() (err error) {
		is, err = s.ca.Sign(ca.Request{CSR: blk.Bytes, ID: id, Node: req.Node})
		return err
	}
	how := "renewal"
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		tok = ""
	}
	tok = strings.TrimSpace(tok)
	if c.Kind == "node" {
		err = sign()
	} else if s.review != nil && tok != "" && !ca.IsJoinToken(tok) {
		how = "service-account token"
		if aerr := s.reviewJoin(r.Context(), tok, req.Node, sc); aerr != nil {
			s.refuse(w, r, c, aerr)
			return
		}
		err = sign()
	} else {
		how = "join token"
		err = s.tokens.Redeem(req.Node, tok, sign)
	}
	var te *ca.TokenError
	switch {
	case errors.As(err, &te):
		status := http.StatusUnauthorized
		if errors.Is(err, ca.ErrTokenOtherNode) {
			status = http.StatusForbidden
		}
		s.refuse(w, r, c, &authError{status, te.Msg})
		return
	case err != nil:
		status := http.StatusBadRequest
		if errors.Is(err, ca.ErrForeignIdentity) {
			status = http.StatusForbidden
		}
		s.log.Warn("certificate request refused", zap.String("node", req.Node), zap.String("spiffe_id", id), zap.Error(err))
		writeError(w, status, err.Error())
		return
	}
	var chain []byte
	for _, der := range is.Chain {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	s.log.Info("certificate issued", zap.String("node", req.Node), zap.String("spiffe_id", id), zap.String("by", how), zap.Time("expires", is.Leaf.NotAfter))
	writeJSON(w, http.StatusOK, CertificateResponse{SpiffeID: id, Chain: string(chain), ExpiresAt: is.Leaf.NotAfter, BundleResponse: s.bundle()})
}

// reviewJoin checks a sidecar's projected service-account token with the
// TokenReview API: it must be valid for the audience, of a live pod when
// bound to one, and of the namespace and service account of the node's
// Sidecar resource, whose SPIFFE ID the certificate then carries.
func (s *Server) reviewJoin(ctx context.Context, tok, node string, sc *mesh.Resource) *authError {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	wl, err := s.review.Review(ctx, tok)
	switch {
	case kube.IsReviewError(err):
		return &authError{http.StatusUnauthorized, err.Error()}
	case err != nil:
		s.log.Error("TokenReview failed", zap.String("node", node), zap.Error(err))
		return &authError{http.StatusServiceUnavailable, "cannot check the service-account token with the Kubernetes API now: " + err.Error()}
	}
	if wl.Namespace != sc.Namespace || wl.ServiceAccount != mesh.ServiceAccountOf(sc) {
		return &authError{http.StatusForbidden, fmt.Sprintf("the token is service account %s/%s's; node %s is service account %s/%s's (its Sidecar resource's namespace and service_account)",
			wl.Namespace, wl.ServiceAccount, node, sc.Namespace, mesh.ServiceAccountOf(sc))}
	}
	s.log.Info("service-account token accepted", zap.String("node", node), zap.String("namespace", wl.Namespace),
		zap.String("service_account", wl.ServiceAccount), zap.String("pod", wl.Pod))
	return nil
}

func (s *Server) handleRotate(w http.ResponseWriter, r *http.Request) {
	err := s.rotateShared()
	if err == nil {
		// Clients trust the new root from now on, before it signs.
		err = s.writeCAFile()
	}
	res, msg := "applied", ""
	if err != nil {
		res, msg = "refused", err.Error()
	}
	_ = s.audit.Write(store.AuditEntry{Time: time.Now().UTC(), Who: who(r), Source: "api", Action: "rotate-ca",
		Revision: s.store.Revision(), Result: res, Error: msg})
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.bundle())
}
