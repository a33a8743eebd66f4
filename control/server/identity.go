package server

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/mesh"
	"github.com/weftmesh/weft/control/store"
	"github.com/weftmesh/weft/proxy/identity"
)

// TokenRequest asks for a node's join token (POST /v1/tokens).
type TokenRequest struct {
	Node string `json:"node"`
}

// TokenResponse carries a new join token; it is shown once.
type TokenResponse struct {
	Node  string `json:"node"`
	Token string `json:"token"`
}

// CertificateRequest is a sidecar's CSR (POST /v1/certificate, with
// "Authorization: Bearer JOIN-TOKEN").
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
	mux.HandleFunc("POST /v1/tokens", s.handleToken)
	mux.HandleFunc("POST /v1/certificate", s.handleCertificate)
	mux.HandleFunc("GET /v1/bundle", s.handleBundle)
	mux.HandleFunc("POST /v1/ca/rotate", s.handleRotate)
}

// CA is the certificate authority, or nil when it is off.
func (s *Server) CA() *ca.CA { return s.ca }

// IssueToken makes a new join token for node (what POST /v1/tokens does).
func (s *Server) IssueToken(node, who string) (string, error) {
	if s.tokens == nil {
		return "", errors.New("the certificate authority is off (start weft control with -trust-domain)")
	}
	tok, err := s.tokens.Issue(node)
	res, msg := "applied", ""
	if err != nil {
		res, msg = "refused", err.Error()
	}
	_ = s.audit.Write(store.AuditEntry{Time: time.Now().UTC(), Who: who, Source: "api", Action: "issue-join-token",
		Resources: []string{"node " + node}, Revision: s.store.Revision(), Result: res, Error: msg})
	return tok, err
}

func (s *Server) caOff(w http.ResponseWriter) bool {
	if s.ca == nil {
		writeError(w, http.StatusNotFound, "the certificate authority is off (start weft control with -trust-domain)")
		return true
	}
	return false
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if s.caOff(w) {
		return
	}
	var req TokenRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Node == "" {
		writeError(w, http.StatusBadRequest, `body must be {"node": "NODE-ID"}`)
		return
	}
	tok, err := s.IssueToken(req.Node, who(r))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, TokenResponse{Node: req.Node, Token: tok})
}

func (s *Server) bundle() BundleResponse {
	roots, signer := s.ca.Bundle()
	b := identity.NewBundle(s.ca.TrustDomain(), roots)
	return BundleResponse{TrustDomain: s.ca.TrustDomain(), Bundle: string(identity.EncodeCertsPEM(roots...)), Version: b.Version, Signer: signer}
}

func (s *Server) handleBundle(w http.ResponseWriter, r *http.Request) {
	if s.caOff(w) {
		return
	}
	b := s.bundle()
	etag := `"` + b.Version + "-" + b.Signer + `"`
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// handleCertificate signs a node's CSR. The join token proves the node;
// the identity comes from the node's Sidecar resource (namespace and
// service account), never from the CSR, and a CSR naming another identity
// is refused.
func (s *Server) handleCertificate(w http.ResponseWriter, r *http.Request) {
	if s.caOff(w) {
		return
	}
	var req CertificateRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Node == "" || req.CSR == "" {
		writeError(w, http.StatusBadRequest, `body must be {"node": "NODE-ID", "csr": "PEM"}`)
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !s.tokens.Check(req.Node, strings.TrimSpace(tok)) {
		s.log.Warn("certificate request refused: bad join token", zap.String("node", req.Node), zap.String("remote", r.RemoteAddr))
		writeError(w, http.StatusUnauthorized, "a valid join token for node "+req.Node+" is required (Authorization: Bearer TOKEN)")
		return
	}
	sc := s.store.Mesh().SidecarOf(req.Node)
	if sc == nil {
		writeError(w, http.StatusForbidden, "node "+req.Node+" has no Sidecar resource: its identity is unknown")
		return
	}
	blk, _ := pem.Decode([]byte(req.CSR))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		writeError(w, http.StatusBadRequest, "csr must be a PEM CERTIFICATE REQUEST")
		return
	}
	id := mesh.WorkloadID(s.ca.TrustDomain(), sc)
	is, err := s.ca.Sign(ca.Request{CSR: blk.Bytes, ID: id})
	if err != nil {
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
	s.log.Info("certificate issued", zap.String("node", req.Node), zap.String("spiffe_id", id), zap.Time("expires", is.Leaf.NotAfter))
	writeJSON(w, http.StatusOK, CertificateResponse{SpiffeID: id, Chain: string(chain), ExpiresAt: is.Leaf.NotAfter, BundleResponse: s.bundle()})
}

func (s *Server) handleRotate(w http.ResponseWriter, r *http.Request) {
	if s.caOff(w) {
		return
	}
	err := s.ca.Rotate()
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
