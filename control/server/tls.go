package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/proxy/identity"
)

// CAFile is the CA bundle's file name in the data directory: the roots
// operators' and sidecars' clients trust (weft ctl --ca, weft proxy
// --control-ca). It is rewritten when the roots change.
const CAFile = "ca.pem"

// servingCert is the API's certificate: the operator's, fixed, or one the
// CA issued, re-issued in memory at half-life (and after a CA rotation
// promotes a new root, at the next handshake past half-life).
type servingCert struct {
	issue func() (*tls.Certificate, error)
	log   *zap.Logger

	mu      sync.Mutex
	cur     *tls.Certificate
	renewAt time.Time
}

func (c *servingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.issue != nil && time.Now().After(c.renewAt) {
		next, err := c.issue()
		if err != nil {
			c.log.Error("re-issuing the API's serving certificate failed; the current one serves", zap.Error(err))
		} else {
			c.set(next)
		}
	}
	return c.cur, nil
}

func (c *servingCert) set(crt *tls.Certificate) {
	c.cur = crt
	nb, na := crt.Leaf.NotBefore, crt.Leaf.NotAfter
	c.renewAt = nb.Add(na.Sub(nb) / 2)
}

// servingHosts are the names the issued serving certificate is valid for.
func (s *Server) servingHosts() []string {
	hosts := []string{}
	if h, _, err := net.SplitHostPort(s.ln.Addr().String()); err == nil {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	if u, err := url.Parse(s.o.PublicURL); err == nil && u.Hostname() != "" {
		hosts = append(hosts, u.Hostname())
	}
	hosts = append(hosts, s.o.TLSHosts...)
	hosts = append(hosts, "127.0.0.1", "::1", "localhost")
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return hosts
}

func (s *Server) newServingCert() (*servingCert, error) {
	c := &servingCert{log: s.log}
	if s.o.TLSCertFile != "" {
		crt, err := tls.LoadX509KeyPair(s.o.TLSCertFile, s.o.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("control: -tls-cert/-tls-key: %w", err)
		}
		c.cur = &crt
		return c, nil
	}
	hosts := s.servingHosts()
	c.issue = func() (*tls.Certificate, error) { return s.ca.IssueServing(hosts) }
	crt, err := c.issue()
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	c.set(crt)
	return c, nil
}

// tlsConfig asks for (but does not require) a client certificate:
// operators may use a bearer token instead. Certificates are verified per
// request against the CA's current bundle (authenticate), so a rotation
// applies at once.
func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.serving.get,
		ClientAuth:     tls.RequestClientCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// writeCAFile writes the CA bundle to DATA/ca.pem (0644: certificates
// are public).
func (s *Server) writeCAFile() error {
	roots, _ := s.ca.Bundle()
	if err := writePublicFile(s.caFile, identity.EncodeCertsPEM(roots...)); err != nil {
		return fmt.Errorf("control: writing %s: %w", s.caFile, err)
	}
	return nil
}

// CAFingerprint is the sha256 fingerprint of the signing root, printed
// at start so an operator can pin it when fetching ca.pem
// (weft ctl ca-cert --fingerprint).
func (s *Server) CAFingerprint() string {
	roots, _ := s.ca.Bundle()
	return ca.Fingerprint(roots[0])
}

// loadUsers reads the users file and the bootstrap admin token.
func (s *Server) loadUsers() error {
	s.users = &users{}
	if s.o.Insecure {
		return nil
	}
	if s.o.Etcd != nil {
		if err := s.shareAdmin(); err != nil {
			return fmt.Errorf("control: %w", err)
		}
	} else {
		tok, path, err := bootstrapAdmin(s.o.DataDir, s.log)
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		s.adminToken, s.adminFile = tok, path
		d := hashToken(tok)
		s.users.admin.Store(&d)
	}
	if s.o.UsersFile != "" {
		list, err := loadUsers(s.o.UsersFile)
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		for _, u := range list {
			if u.name == "admin" {
				return fmt.Errorf("control: users file: name \"admin\" is the bootstrap admin's; choose another")
			}
		}
		s.users.list = append(s.users.list, list...)
	}
	return nil
}

func writePublicFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ca.pem.*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	if err := errors.Join(werr, tmp.Chmod(0o644), tmp.Sync(), tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
