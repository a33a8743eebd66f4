package client

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/identity"
)

// This file is how a sidecar reaches the control plane's TLS API: it
// trusts the mesh CA (the operator's ca.pem, plus the trust bundle its
// identity keeps fresh, so a CA rotation needs no new file) and presents
// its node certificate once it has one.

// LoadCA reads a PEM bundle of CA certificates (weft proxy --control-ca,
// weft ctl --ca).
func LoadCA(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := identity.ParseCertsPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE in it", path)
	}
	return certs, nil
}

// TLSConfig is the TLS client config for the control plane's API: the
// server's certificate must chain to roots or to id's current trust
// bundle and name the host dialed; id's current certificate, when it has
// one, is presented as the client certificate (id may be nil).
func TLSConfig(roots []*x509.Certificate, id *identity.Source) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain and host name are checked by VerifyConnection against
		// roots and the live bundle, which a RootCAs pool fixed now could
		// not follow.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, roots, id)
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if id != nil {
				if v := id.SVID(); v != nil {
					return v.Certificate, nil
				}
			}
			return &tls.Certificate{}, nil // none yet: join with a token
		},
	}
}

func verifyServer(cs tls.ConnectionState, roots []*x509.Certificate, id *identity.Source) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("control plane sent no certificate")
	}
	opts := x509.VerifyOptions{DNSName: cs.ServerName, Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool()}
	for _, r := range roots {
		opts.Roots.AddCert(r)
	}
	if id != nil {
		if b := id.Bundle(); b != nil {
			for _, r := range b.Roots {
				opts.Roots.AddCert(r)
			}
		}
	}
	for _, ic := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
		return fmt.Errorf("control plane certificate: %w (is --control-ca this control plane's ca.pem?)", err)
	}
	return nil
}

// localizeModules fetches the modules of the filters and Wasm services
// served by the control plane (over this client's authenticated
// connection), checks their sha256, keeps them in dir and points the config
// at the files, so the proxy never needs the control plane's credentials.
// onControl says whether a module URL is the control plane's and where to
// fetch it now (the replica in use).
func localizeModules(ctx context.Context, hc *http.Client, onControl func(string) (string, bool), dir string, cfg *config.Config) error {
	for _, list := range []struct {
		what string
		fs   *[]config.Filter
	}{{"filter", &cfg.Filters}, {"wasm service", &cfg.WasmServices}} {
		copied := false
		for i := range *list.fs {
			m := (*list.fs)[i].Module
			if m.URL == "" {
				continue
			}
			u, ok := onControl(m.URL)
			if !ok {
				continue
			}
			sha := strings.ToLower(strings.TrimPrefix(m.SHA256, "sha256:"))
			path := filepath.Join(dir, sha+".wasm")
			if _, err := os.Stat(path); err != nil {
				if err := fetchModule(ctx, hc, u, sha, path); err != nil {
					return fmt.Errorf("%s %q: module: %w", list.what, (*list.fs)[i].Name, err)
				}
			}
			if !copied {
				// The list may be shared with the config parsed before
				// (config.ParseJSONAfter): change a copy.
				*list.fs, copied = slices.Clone(*list.fs), true
			}
			(*list.fs)[i].Module.Path, (*list.fs)[i].Module.URL = path, ""
		}
	}
	return nil
}

// maxModuleBytes bounds a fetched module (as the proxy's own fetch does).
const maxModuleBytes = 256 << 20

func fetchModule(ctx context.Context, hc *http.Client, url, sha, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxModuleBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if len(b) > maxModuleBytes {
		return fmt.Errorf("GET %s: module larger than %d bytes", url, maxModuleBytes)
	}
	got := sha256.Sum256(b)
	if hex.EncodeToString(got[:]) != sha {
		return fmt.Errorf("GET %s: module digest is %x, config says %s", url, got, sha)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	if err := errors.Join(werr, tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
