package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/authz"
	"github.com/weftmesh/weft/proxy/config"
	"github.com/weftmesh/weft/proxy/filter"
	"github.com/weftmesh/weft/proxy/identity"
	"github.com/weftmesh/weft/proxy/listener"
)

// listenerSecurity is a listener's compiled mTLS and authorization.
type listenerSecurity struct {
	tlsMode string      // "" or "disabled": plaintext
	tlsCfg  *tls.Config // nil when plaintext
	authz   *authz.Policy
	log     *zap.Logger // for dry-run denials
}

// ErrNoIdentity is returned when a config asks for mTLS with the mesh
// identity but the proxy has none (run with --control and a join token, or
// give cert_file, key_file and ca_file).
var ErrNoIdentity = errors.New("mTLS needs the mesh identity (weft proxy --control URL --join-token T) or cert_file, key_file and ca_file")

// identitySource picks the identity a tls block uses: its files, or the
// proxy's mesh identity.
func (p *Proxy) identitySource(certFile, keyFile, caFile, baseDir string) (*identity.Source, error) {
	if certFile != "" {
		abs := func(f string) string {
			if filepath.IsAbs(f) {
				return f
			}
			return filepath.Join(baseDir, f)
		}
		return identity.LoadFiles(abs(certFile), abs(keyFile), abs(caFile))
	}
	if p.identity == nil {
		return nil, ErrNoIdentity
	}
	return p.identity, nil
}

func tlsVersion(v string) uint16 {
	if v == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// clusterTLSConfig is the client TLS config of an mtls cluster, or nil.
func (p *Proxy) clusterTLSConfig(cc *config.Cluster, baseDir string) (*tls.Config, error) {
	t := cc.TLS
	if t == nil || t.Mode == "disabled" {
		return nil, nil
	}
	src, err := p.identitySource(t.CertFile, t.KeyFile, t.CAFile, baseDir)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: tls: %w", cc.Name, err)
	}
	return src.ClientConfig(tlsVersion(t.MinVersion), t.ServerIDs), nil
}

// compileSecurity compiles a listener's tls and authz.
func (p *Proxy) compileSecurity(lc *config.Listener, baseDir string) (listenerSecurity, error) {
	var sec listenerSecurity
	if t := lc.TLS; t != nil && (t.Mode == listener.TLSStrict || t.Mode == listener.TLSPermissive) {
		src, err := p.identitySource(t.CertFile, t.KeyFile, t.CAFile, baseDir)
		if err != nil {
			return sec, fmt.Errorf("listener %q: tls: %w", lc.Name, err)
		}
		sec.tlsMode, sec.tlsCfg = t.Mode, src.ServerConfig(tlsVersion(t.MinVersion))
	}
	if lc.Authz != nil {
		pol, err := authz.Compile(lc.Name, lc.Authz, p.authzMetrics)
		if err != nil {
			return sec, err
		}
		sec.authz, sec.log = pol, p.log.With(zap.String("listener", lc.Name))
	}
	return sec, nil
}

// tlsSelect is the listener's per-connection TLS choice (the state in
// force when the connection is accepted).
func (rl *runningListener) tlsSelect() (string, *tls.Config) {
	ls := rl.state.Load()
	if ls == nil {
		return "", nil
	}
	return ls.sec.tlsMode, ls.sec.tlsCfg
}

// connTLS is the downstream connection's TLS facts, or nil for plaintext.
func connTLS(ctx *fasthttp.RequestCtx) *filter.TLSInfo {
	if c, ok := ctx.Conn().(listener.TLSInfoer); ok {
		return c.TLSInfo()
	}
	return nil
}

// authorize runs the listener's authorization policy; a denied request
// gets a 403 with X-Weft-Authz: denied:RULE and false.
func (ls *listenerState) authorize(s *filter.Stream) bool {
	if ls.sec.authz == nil {
		return true
	}
	d := ls.sec.authz.Check(s)
	if d == nil {
		if ls.sec.authz.HasDryRun() {
			ls.dryRun(s)
		}
		return true
	}
	resp := s.Response
	resp.Reset()
	resp.SetStatusCode(fasthttp.StatusForbidden)
	resp.Header.SetBytesV(authz.Header, d.Value)
	resp.Header.SetContentType("text/plain; charset=utf-8")
	resp.SetBodyString("RBAC: access denied\n")
	s.ResponseFlags = "UAEX"
	return false
}

// dryRun logs what the dry-run policy would have refused: the policy being
// tried on live traffic. Logged at info (it is what the operator asked to
// see), once per such request.
func (ls *listenerState) dryRun(s *filter.Stream) {
	d := ls.sec.authz.DryRun(s)
	if d == nil {
		return
	}
	peer := ""
	if s.TLS != nil && s.TLS.MTLS {
		peer = s.TLS.PeerURISAN
	}
	// Copies: the request's buffers are reused once it ends, and a log
	// core may keep fields past this call.
	ls.sec.log.Info("authz dry run: this request would be denied", zap.String("rule", d.Rule),
		zap.String("method", string(s.Request.Header.Method())), zap.String("path", string(s.Request.URI().Path())), zap.String("peer", peer))
}
