package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/proxy/identity"
)

// This file decides who calls the API and what they may do. Operators
// authenticate with a bearer token (the bootstrap admin token or one from
// the users file) or a client certificate named in the users file;
// sidecars with the certificate the CA issued to their node. Nothing is
// taken from a header the caller chooses freely.

// Role is what an operator may do; each role includes the ones before it.
type Role int

// Roles.
const (
	RoleNone Role = iota
	// RoleViewer reads resources, status, telemetry and modules.
	RoleViewer
	// RoleEditor also applies, replaces and deletes resources (set-weight
	// included) and uploads modules.
	RoleEditor
	// RoleAdmin also mints join tokens and rotates the CA.
	RoleAdmin
)

var roleNames = map[string]Role{"viewer": RoleViewer, "editor": RoleEditor, "admin": RoleAdmin}

// String is the role's name in the users file.
func (r Role) String() string {
	for n, v := range roleNames {
		if v == r {
			return n
		}
	}
	return "none"
}

// adminTokenFile holds the bootstrap admin token in the data directory.
const adminTokenFile = "admin.token"

// operatorTokenPrefix marks operator tokens this server generates.
const operatorTokenPrefix = "wot_"

// Caller is an authenticated (or anonymous) API caller.
type Caller struct {
	// Kind is "user", "node" or "anonymous".
	Kind string
	// Name is the user or node name.
	Name string
	// Role is a user's role (RoleNone for nodes and anonymous callers).
	Role Role
	// Via says how the caller proved it: "token", "certificate", or
	// "insecure-api" when authentication is off.
	Via string
}

// String is how the audit log and logs name the caller: "user:alice",
// "node:orders-1" or "anonymous".
func (c Caller) String() string {
	if c.Kind == "anonymous" {
		return "anonymous"
	}
	return c.Kind + ":" + c.Name
}

type callerKey struct{}

// callerOf is the request's caller (set by authenticate).
func callerOf(r *http.Request) Caller {
	if c, ok := r.Context().Value(callerKey{}).(Caller); ok {
		return c
	}
	return Caller{Kind: "anonymous"}
}

// user is one line of the users file (or the bootstrap admin).
type user struct {
	name string
	role Role
	// digest is the hex sha256 of the user's bearer token; "" for a
	// certificate user.
	digest string
	cert   bool
}

// users are the operators the server knows.
type users struct {
	list []user
	// admin is the digest of the bootstrap admin token ("" or nil: none
	// accepted); on etcd, the one every replica shares, kept current.
	admin atomic.Pointer[string]
}

// byToken finds the user whose token is tok, comparing digests in
// constant time.
func (u *users) byToken(tok string) (user, bool) {
	got := hashToken(tok)
	var found user
	ok := false
	if d := u.admin.Load(); d != nil && *d != "" && subtle.ConstantTimeCompare([]byte(*d), []byte(got)) == 1 {
		found, ok = user{name: "admin", role: RoleAdmin, digest: *d}, true
	}
	for _, x := range u.list {
		if x.digest != "" && subtle.ConstantTimeCompare([]byte(x.digest), []byte(got)) == 1 {
			found, ok = x, true
		}
	}
	return found, ok
}

func (u *users) byCert(cn string) (user, bool) {
	for _, x := range u.list {
		if x.cert && x.name == cn {
			return x, true
		}
	}
	return user{}, false
}

func hashToken(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// loadUsers reads the users file: one operator per line,
//
//	NAME ROLE sha256:HEX   a bearer token, by the hex sha256 of the token
//	NAME ROLE cert         a client certificate with subject CN=NAME,
//	                       chained to the mesh CA
//
// ROLE is viewer, editor or admin; blank lines and # comments are skipped.
func loadUsers(path string) ([]user, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	var out []user
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		at := fmt.Sprintf("%s:%d", path, line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%s: want NAME ROLE sha256:HEX or NAME ROLE cert, got %d fields", at, len(f))
		}
		u := user{name: f[0]}
		if seen[u.name] {
			return nil, fmt.Errorf("%s: name: %q is given twice", at, u.name)
		}
		seen[u.name] = true
		var ok bool
		if u.role, ok = roleNames[f[1]]; !ok {
			return nil, fmt.Errorf("%s: role: %q is not viewer, editor or admin", at, f[1])
		}
		switch cred := f[2]; {
		case cred == "cert":
			u.cert = true
		case strings.HasPrefix(cred, "sha256:"):
			d := strings.ToLower(strings.TrimPrefix(cred, "sha256:"))
			if raw, err := hex.DecodeString(d); err != nil || len(raw) != sha256.Size {
				return nil, fmt.Errorf("%s: token: want sha256: and 64 hex digits (printf %%s TOKEN | sha256sum)", at)
			}
			u.digest = d
		default:
			return nil, fmt.Errorf("%s: credential: %q is neither sha256:HEX nor cert (the file holds token digests, never tokens)", at, cred)
		}
		out = append(out, u)
	}
	return out, sc.Err()
}

// bootstrapAdmin reads DATA/admin.token, creating it (mode 0600) with a
// new token on first start.
func bootstrapAdmin(dataDir string, log *zap.Logger) (string, string, error) {
	path := filepath.Join(dataDir, adminTokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the admin token file is readable by others; chmod 600 it", zap.String("path", path), zap.Stringer("mode", fi.Mode().Perm()))
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", "", fmt.Errorf("admin token: %s is empty; delete it to have a new token made", path)
		}
		return tok, path, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("admin token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", err
	}
	tok := operatorTokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("admin token: %w", err)
	}
	_, werr := f.WriteString(tok + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return "", "", fmt.Errorf("admin token: %w", err)
	}
	log.Info("wrote the bootstrap admin token", zap.String("path", path))
	return tok, path, nil
}

// authError is a refused request: 401 when the caller is not
// authenticated, 403 when it may not do this.
type authError struct {
	status int
	msg    string
}

// authenticate finds the caller: a verified client certificate first (a
// node's, or an operator's named in the users file), else a bearer token.
// A presented credential that does not verify is an error, never a
// fallback to anonymous.
func (s *Server) authenticate(r *http.Request) (Caller, *authError) {
	if s.o.Insecure {
		return Caller{Kind: "anonymous", Role: RoleAdmin, Via: "insecure-api"}, nil
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		leaf, err := s.ca.VerifyClient(r.TLS.PeerCertificates)
		if err != nil {
			return Caller{}, &authError{http.StatusUnauthorized, err.Error() + "; present a certificate from this mesh's CA"}
		}
		if node := ca.NodeOf(leaf); node != "" {
			if identity.PeerID(leaf) == "" {
				return Caller{}, &authError{http.StatusUnauthorized, "client certificate: a node certificate without a SPIFFE ID"}
			}
			return Caller{Kind: "node", Name: node, Via: "certificate"}, nil
		}
		if len(leaf.URIs) == 0 {
			if u, ok := s.users.byCert(leaf.Subject.CommonName); ok {
				return Caller{Kind: "user", Name: u.name, Role: u.role, Via: "certificate"}, nil
			}
		}
		// A valid certificate that names no operator: fall through to the
		// bearer token (curl --cacert with a workload's certificate).
		if r.Header.Get("Authorization") == "" {
			return Caller{}, &authError{http.StatusUnauthorized, fmt.Sprintf("client certificate %q is not an operator in the users file and not a node certificate", leaf.Subject.CommonName)}
		}
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return Caller{Kind: "anonymous"}, nil
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	tok = strings.TrimSpace(tok)
	if !ok || tok == "" {
		return Caller{}, &authError{http.StatusUnauthorized, "Authorization: want Bearer TOKEN"}
	}
	u, ok := s.users.byToken(tok)
	if !ok {
		return Caller{}, &authError{http.StatusUnauthorized, "the bearer token is not recognised (is it the right control plane's? see DATA/admin.token or the users file)"}
	}
	return Caller{Kind: "user", Name: u.name, Role: u.role, Via: "token"}, nil
}

// access is what a route asks of its caller.
type access int

const (
	// public: anyone, even unauthenticated (health, the CA bundle, the
	// certificate endpoint, which checks a join token or node certificate
	// itself).
	public access = iota
	// nodeOnly: a sidecar's own node certificate (watch, ACK); the handler
	// checks the node named in the request is the caller's.
	nodeOnly
	// nodeOrViewer: a node, or an operator with at least viewer (module
	// downloads).
	nodeOrViewer
	viewer
	editor
	admin
)

func (a access) role() Role {
	switch a {
	case viewer, nodeOrViewer:
		return RoleViewer
	case editor:
		return RoleEditor
	case admin:
		return RoleAdmin
	}
	return RoleNone
}

// guard wraps h: it authenticates the caller, checks the route's access
// and refuses (logged, 401 or 403 with the reason) or passes the caller
// on in the request's context.
func (s *Server) guard(a access, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, aerr := s.authenticate(r)
		if aerr != nil && a == public {
			// A public route does its own checks (the certificate endpoint
			// falls back to the join token when a renewal's certificate
			// has expired).
			c, aerr = Caller{Kind: "anonymous"}, nil
		}
		if aerr == nil {
			aerr = allowed(a, c)
		}
		if aerr != nil {
			s.refuse(w, r, c, aerr)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	}
}

func allowed(a access, c Caller) *authError {
	if c.Via == "insecure-api" {
		return nil
	}
	switch {
	case a == public:
		return nil
	case c.Kind == "anonymous":
		return &authError{http.StatusUnauthorized, "authentication required: send Authorization: Bearer TOKEN (weft ctl --token, $WEFT_TOKEN) or a client certificate"}
	case a == nodeOnly && c.Kind != "node":
		return &authError{http.StatusForbidden, c.String() + " is not a sidecar: only a node's own certificate may watch or acknowledge"}
	case a == nodeOnly, a == nodeOrViewer && c.Kind == "node":
		return nil
	case c.Kind == "node":
		return &authError{http.StatusForbidden, c.String() + " is a sidecar; this call is for operators"}
	case c.Role < a.role():
		return &authError{http.StatusForbidden, fmt.Sprintf("%s has role %s; this call needs %s", c, c.Role, a.role())}
	}
	return nil
}

// refuse answers a refused request and logs it. A 401 also closes the
// connection, so a sidecar that had no certificate yet, or whose
// certificate expired on a kept-alive connection, reconnects with its
// current one.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, c Caller, e *authError) {
	s.log.Warn("API request refused", zap.Int("status", e.status), zap.String("reason", e.msg),
		zap.String("caller", c.String()), zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="weft"`)
		// The client's next attempt may bring a certificate it did not
		// have (or an expired one it has renewed): on a new connection.
		w.Header().Set("Connection", "close")
	}
	writeError(w, e.status, e.msg)
}

// checkNode refuses a node caller acting for another node.
func (s *Server) checkNode(w http.ResponseWriter, r *http.Request, node string) bool {
	c := callerOf(r)
	if c.Via == "insecure-api" || (c.Kind == "node" && c.Name == node) {
		return true
	}
	s.refuse(w, r, c, &authError{http.StatusForbidden, fmt.Sprintf("%s may only watch and acknowledge for itself, not node %q", c, node)})
	return false
}
