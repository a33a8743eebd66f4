package config

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Security defaults (mTLS, authorization, TCP proxying).
const (
	defaultTLSMode          = "disabled"
	defaultTLSMinVersion    = "1.2"
	defaultAuthzDefault     = "allow"
	DefaultRequestPrincipal = "x-weft-jwt-sub"
	defaultProtocol         = "http"
	// DefaultTCPIdleTimeout closes a tcp listener's connection when no
	// byte moved either way for this long.
	DefaultTCPIdleTimeout = time.Hour
)

func (l *Listener) applySecurityDefaults() {
	if t := l.TLS; t != nil {
		setStr(&t.Mode, defaultTLSMode)
		setStr(&t.MinVersion, defaultTLSMinVersion)
	}
	if a := l.Authz; a != nil {
		setStr(&a.Default, defaultAuthzDefault)
		setStr(&a.RequestPrincipalHeader, DefaultRequestPrincipal)
	}
	setStr(&l.Protocol, defaultProtocol)
	if t := l.TCP; t != nil {
		setDur(&t.IdleTimeout, DefaultTCPIdleTimeout)
		// ConnectTimeout stays 0: the cluster's connect_timeout applies.
	}
}

// listenerSecurity validates tls, authz and a tcp listener's forwarding.
// It reports whether the listener needs no virtual hosts (a tcp listener).
func (v *validator) listenerSecurity(p fpath, l *Listener) bool {
	if t := l.TLS; t != nil {
		v.oneOf(p.f(".tls.mode"), t.Mode, "disabled", "strict", "permissive")
		v.tlsFiles(p.f(".tls"), t.MinVersion, t.CertFile, t.KeyFile, t.CAFile)
	}
	if a := l.Authz; a != nil {
		v.authz(p.f(".authz"), a)
	}
	v.oneOf(p.f(".protocol"), l.Protocol, "http", "tcp")
	if l.Protocol != "tcp" {
		if l.TCP != nil {
			v.errf(p.f(".tcp"), "tcp only applies to a listener with protocol: tcp")
		}
		return false
	}
	v.tcpListener(p, l)
	return true
}

// tcpListener checks what a tcp listener has instead of virtual hosts, and
// refuses what only HTTP has: virtual hosts and authz conditions on
// requests. Its filters run as network (L4) filters.
func (v *validator) tcpListener(p fpath, l *Listener) {
	if len(l.VirtualHosts) > 0 {
		v.errf(p.f(".virtual_hosts"), "a tcp listener has no virtual_hosts; it forwards every connection to tcp.cluster")
	}
	t := l.TCP
	if t == nil {
		v.errf(p.f(".tcp"), "a listener with protocol: tcp needs tcp: {cluster: NAME}")
		return
	}
	v.clusterRef(p.f(".tcp.cluster"), t.Cluster)
	v.duration(p.f(".tcp.idle_timeout"), t.IdleTimeout)
	v.duration(p.f(".tcp.connect_timeout"), t.ConnectTimeout)
	if a := l.Authz; a != nil {
		for i := range a.Rules {
			r := &a.Rules[i]
			rp := p.at(".authz.rules", i)
			for _, f := range []struct {
				name string
				set  bool
			}{{"request_principals", len(r.RequestPrincipals) > 0}, {"methods", len(r.Methods) > 0},
				{"paths", len(r.Paths) > 0}, {"headers", len(r.Headers) > 0}} {
				if f.set {
					v.errf(rp.f("."+f.name), "a tcp listener sees no HTTP requests; only principals and ports apply")
				}
			}
		}
	}
}

func (v *validator) tlsFiles(p fpath, minVersion, cert, key, ca string) {
	v.oneOf(p.f(".min_version"), minVersion, "1.2", "1.3")
	set := 0
	for _, f := range []string{cert, key, ca} {
		if f != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		v.errf(p, "set all of cert_file, key_file, ca_file, or none (to use the mesh identity)")
	}
}

func (v *validator) clusterTLS(p fpath, t *ClusterTLS) {
	if t == nil {
		return
	}
	v.oneOf(p.f(".mode"), t.Mode, "mtls", "disabled")
	v.tlsFiles(p, t.MinVersion, t.CertFile, t.KeyFile, t.CAFile)
	for i, id := range t.ServerIDs {
		if err := checkPrincipal(id); err != nil {
			v.errf(p.at(".server_ids", i), "%v", err)
		}
	}
}

func (v *validator) authz(p fpath, a *Authz) {
	if d := a.DryRun; d != nil {
		v.authz(p.f(".dry_run"), &Authz{Default: d.Default, Rules: d.Rules})
	}
	v.oneOf(p.f(".default"), a.Default, "allow", "deny")
	if a.RequestPrincipalHeader != "" && !validToken(a.RequestPrincipalHeader) {
		v.errf(p.f(".request_principal_header"), "header name %q has characters a header name cannot have", a.RequestPrincipalHeader)
	}
	seen := names{}
	for i := range a.Rules {
		r := &a.Rules[i]
		rp := p.at(".rules", i)
		if v.required(rp.f(".name"), "name", r.Name) {
			v.unique(&seen, rp.f(".name"), "rule name", r.Name)
			if strings.ContainsAny(r.Name, " \t\r\n,;") {
				v.errf(rp.f(".name"), "rule name %q: no spaces, commas or semicolons (it is sent in a header)", r.Name)
			}
		}
		if v.required(rp.f(".action"), "action (allow or deny)", r.Action) {
			v.oneOf(rp.f(".action"), r.Action, "allow", "deny")
		}
		for j, pr := range r.Principals {
			if err := checkPrincipal(pr); err != nil {
				v.errf(rp.at(".principals", j), "%v", err)
			}
		}
		for j, pr := range r.RequestPrincipals {
			if pr == "" {
				v.errf(rp.at(".request_principals", j), "empty principal; use \"*\" for any")
			}
		}
		for j, m := range r.Methods {
			mp := rp.at(".methods", j)
			if !validToken(m) {
				v.errf(mp, "method %q is not an HTTP method name", m)
			} else if strings.ToUpper(m) != m {
				v.errf(mp, "method %q: methods are case-sensitive; write %q", m, strings.ToUpper(m))
			}
		}
		for j, path := range r.Paths {
			if !strings.HasPrefix(path, "/") {
				v.errf(rp.at(".paths", j), "path %q must start with \"/\" (end it with \"*\" for a prefix)", path)
			} else if !utf8.ValidString(path) {
				v.errf(rp.at(".paths", j), "path %q is not UTF-8", path)
			} else if strings.Contains(path, "***") {
				v.errf(rp.at(".paths", j), "path %q: use \"*\" (within a segment) or \"**\" (across segments), not \"***\"", path)
			}
		}
		for j := range r.Headers {
			v.matcher(rp.at(".headers", j), &r.Headers[j], true)
		}
		for j, port := range r.Ports {
			if port < 1 || port > 65535 {
				v.errf(rp.at(".ports", j), "port %d is not a number from 1 to 65535", port)
			}
		}
	}
}

// checkPrincipal checks a SPIFFE ID pattern: spiffe://td/path, a prefix
// ending in "/*", or "*". (proxy/identity has the full parser; config must
// not import runtime packages.)
func checkPrincipal(s string) error {
	if s == "*" {
		return nil
	}
	base := strings.TrimSuffix(s, "/*")
	rest, ok := strings.CutPrefix(base, "spiffe://")
	if !ok {
		return fmt.Errorf("principal %q must be a SPIFFE ID (spiffe://TRUST-DOMAIN/...), a prefix ending in \"/*\", or \"*\"", s)
	}
	td, path, _ := strings.Cut(rest, "/")
	if td == "" {
		return fmt.Errorf("principal %q has no trust domain", s)
	}
	for _, c := range td {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("principal %q: trust domain may hold lower-case letters, digits, '.', '-', '_'", s)
		}
	}
	if strings.Contains(path, "*") || strings.Contains(path, "//") || strings.HasSuffix(path, "/") {
		return fmt.Errorf("principal %q: a wildcard is only a trailing \"/*\"; no empty path segments", s)
	}
	return nil
}
