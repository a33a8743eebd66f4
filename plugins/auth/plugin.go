package main

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/weftmesh/weft/sdk"
)

// plugin is the auth filter's state in one VM.
type plugin struct {
	cfg *compiled
	v   validator

	// keys is the key set in use: inline, or the last fetched one.
	keys    *keySet
	keysGen uint64
	// fetchedAt is when the remote keys were fetched (zero: never).
	fetchedAt time.Time
	fetching  bool
	fetchSent time.Time
	waiting   []*sdk.Stream

	cache tokenCache
	hostv hostVerifier

	allowed, denied, fetches, fetchErrors sdk.Counter
	// hostTokens counts the tokens the host decoded and checked whole
	// (weft.jws_verify).
	hostTokens sdk.Counter
	// edits is the reused list of a request's header writes.
	edits []sdk.HeaderEdit
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	cfg, err := parseConfig(raw)
	if err != nil {
		return nil, err
	}
	p := &plugin{cfg: cfg}
	if j := cfg.JWT; j != nil {
		p.v = validator{algs: cfg.algs, issuer: j.Issuer, audiences: j.Audiences, skew: cfg.skew, host: &p.hostv}
		// The host returns the claims the filter reads: iss and aud when
		// checked, and those copied to headers.
		var names []string
		if j.Issuer != "" {
			names = append(names, "iss")
		}
		if len(j.Audiences) > 0 {
			names = append(names, "aud")
		}
		for _, ch := range j.ClaimsToHeaders {
			names = append(names, ch.Claim)
		}
		p.v.jws = newHostJWS(cfg, names, &p.hostv.host, &p.hostTokens)
		p.keys = cfg.inlineKeys
		p.cache.init(cfg.cacheSize)
		if j.RemoteJWKS != nil {
			// Ticks refresh the keys; the first request fetches them if no
			// tick came first.
			if err := sdk.SetTickPeriod(cfg.refresh); err != nil {
				return nil, err
			}
		}
	}
	for name, c := range map[string]*sdk.Counter{
		"auth_allowed_total": &p.allowed, "auth_denied_total": &p.denied,
		"auth_jwks_fetches_total": &p.fetches, "auth_jwks_fetch_errors_total": &p.fetchErrors,
		"auth_signatures_host_total": &p.hostv.host, "auth_signatures_vm_total": &p.hostv.vm,
		"auth_tokens_host_total": &p.hostTokens,
	} {
		if *c, err = sdk.NewCounter(name); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// NewHTTPFilter implements sdk.Plugin.
func (p *plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return filter{p} }

// OnTick refreshes the remote key set.
func (p *plugin) OnTick() {
	if p.cfg.JWT == nil || p.cfg.JWT.RemoteJWKS == nil {
		return
	}
	p.fetch(false)
}

// sharedKey is where VMs of the plugin share the fetched key set.
func (p *plugin) sharedKey() string {
	r := p.cfg.JWT.RemoteJWKS
	return "weft.auth.jwks:" + r.Cluster + ":" + r.Authority + r.Path
}

// fetch gets the key set: from shared data when another VM fetched it
// recently (unless force), else through an HTTP call-out. Streams in
// p.waiting are resumed when it ends.
func (p *plugin) fetch(force bool) {
	now := sdk.Now()
	if !force {
		if doc, _, err := sdk.GetSharedData(p.sharedKey()); err == nil && len(doc) > 8 {
			at := time.Unix(0, int64(binary.LittleEndian.Uint64(doc)))
			if at.After(p.fetchedAt) && now.Sub(at) < p.cfg.refresh {
				if ks, err := parseJWKS(doc[8:]); err == nil {
					p.setKeys(ks, at)
					p.release()
					return
				}
			}
		}
	}
	// A fetch lost by the host (it answers every call, but be safe) must
	// not block new ones forever.
	if p.fetching && now.Sub(p.fetchSent) < 2*p.cfg.timeout {
		return
	}
	r := p.cfg.JWT.RemoteJWKS
	p.fetching, p.fetchSent = true, now
	p.fetches.Inc()
	_, err := sdk.DispatchPluginHTTPCall(r.Cluster, [][2]string{
		{":method", "GET"}, {":path", r.Path}, {":authority", r.Authority}, {"accept", "application/json"},
	}, nil, p.cfg.timeout, p.onJWKS)
	if err != nil {
		p.fetching = false
		p.fetchErrors.Inc()
		sdk.Warnf("auth: jwks fetch from cluster %q: %v", r.Cluster, err)
		p.release()
	}
}

func (p *plugin) onJWKS(resp *sdk.HTTPCallResponse) {
	p.fetching = false
	r := p.cfg.JWT.RemoteJWKS
	switch {
	case resp.Err != nil:
		p.fetchErrors.Inc()
		sdk.Warnf("auth: jwks fetch from cluster %q failed: %v", r.Cluster, resp.Err)
	case resp.Status != 200:
		p.fetchErrors.Inc()
		sdk.Warnf("auth: jwks fetch from cluster %q: status %d", r.Cluster, resp.Status)
	default:
		ks, err := parseJWKS(resp.Body)
		if err != nil {
			p.fetchErrors.Inc()
			sdk.Warnf("auth: jwks from cluster %q: %v", r.Cluster, err)
			break
		}
		now := sdk.Now()
		p.setKeys(ks, now)
		doc := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(resp.Body)), uint64(now.UnixNano()))
		_ = sdk.SetSharedData(p.sharedKey(), append(doc, resp.Body...), 0)
	}
	p.release()
}

func (p *plugin) setKeys(ks *keySet, at time.Time) {
	p.keys, p.fetchedAt = ks, at
	p.keysGen++
	p.cache.clear()
}

// release resumes the streams that waited for keys: they validate again
// with whatever keys there are now.
func (p *plugin) release() {
	w := p.waiting
	p.waiting = nil
	for _, s := range w {
		f, ok := s.Filter().(filter)
		if !ok {
			continue
		}
		if f.check(s, false) {
			_ = s.Resume()
		}
	}
}

// needsFetch reports whether a request must wait for remote keys.
func (p *plugin) needsFetch() bool {
	j := p.cfg.JWT
	return j != nil && j.RemoteJWKS != nil && p.fetchedAt.IsZero() && p.keys == p.cfg.inlineKeys
}

// filter is one stream's view of the plugin (no per-stream state).
type filter struct{ p *plugin }

// Stateless implements sdk.StatelessFilter: one value serves every stream
// (Weft then creates no context in the VM per stream), except with remote
// keys, where a stream may wait for them paused and is resumed later.
func (f filter) Stateless() bool {
	j := f.p.cfg.JWT
	return j == nil || j.RemoteJWKS == nil
}

// OnRequestHeaders authenticates the request.
func (f filter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	p := f.p
	if len(p.cfg.BypassPaths) > 0 {
		path, _ := s.RequestHeaders().Get(":path")
		for _, pre := range p.cfg.BypassPaths {
			if strings.HasPrefix(path, pre) {
				return sdk.Continue
			}
		}
	}
	if p.needsFetch() {
		if _, ok := f.token(s); ok {
			// Wait for the keys: fetch resumes or rejects s when they come
			// (at once when another VM already shared them).
			p.waiting = append(p.waiting, s)
			p.fetch(false)
			return sdk.Pause
		}
	}
	if f.check(s, true) {
		return sdk.Continue
	}
	return sdk.Pause
}

// token returns the request's bearer token.
func (f filter) token(s *sdk.Stream) (string, bool) {
	j := f.p.cfg.JWT
	if j == nil {
		return "", false
	}
	v, ok := s.RequestHeaders().Get(f.p.cfg.tokenHdr)
	if !ok {
		return "", false
	}
	pre := f.p.cfg.prefix
	if pre != "" {
		if len(v) < len(pre) || !strings.EqualFold(v[:len(pre)], pre) {
			return "", false
		}
		v = v[len(pre):]
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}

// check authenticates s and either edits its headers (true: let it
// through) or sends the rejection (false). current is set when s is the
// context host calls act on now (its own callback).
func (f filter) check(s *sdk.Stream, current bool) bool {
	p := f.p
	c := p.cfg
	h := s.RequestHeaders()
	if a := c.APIKeys; a != nil {
		if key, ok := h.Get(c.apiHdr); ok {
			id, ok := a.Keys[key]
			if !ok {
				return f.reject(s, "invalid_token", "unknown API key")
			}
			_ = h.Remove(c.apiHdr)
			_ = h.Set(c.identHdr, id)
			p.allowed.Inc()
			return true
		}
	}
	if j := c.JWT; j != nil {
		// Never trust the claim headers from the client. With a token
		// and distinct headers, each is replaced by its claim or removed
		// below: one host call per header instead of two.
		cl, ok, err := f.jwt(s, current)
		// The header writes go to the host in one call (sdk's Edit:
		// weft.edit_headers on Weft, one call each elsewhere).
		edits := p.edits[:0]
		if !ok || !c.claimHdrsDistinct {
			for _, ch := range j.ClaimsToHeaders {
				edits = append(edits, sdk.HeaderEdit{Op: sdk.HeaderRemove, Name: ch.Header})
			}
		}
		if ok {
			if err != nil {
				sdk.Debugf("auth: token rejected: %v", err)
				return f.reject(s, "invalid_token", err.Error())
			}
			for _, ch := range j.ClaimsToHeaders {
				if v, ok := cl.headerValue(ch.Claim); ok && safeHeaderValue(v) {
					edits = append(edits, sdk.HeaderEdit{Op: sdk.HeaderSet, Name: ch.Header, Value: v})
				} else if c.claimHdrsDistinct {
					edits = append(edits, sdk.HeaderEdit{Op: sdk.HeaderRemove, Name: ch.Header})
				}
			}
			if !j.Forward {
				edits = append(edits, sdk.HeaderEdit{Op: sdk.HeaderRemove, Name: c.tokenHdr})
			}
			f.edit(h, edits)
			p.allowed.Inc()
			return true
		}
		f.edit(h, edits)
	}
	if c.AllowMissing {
		return true
	}
	return f.reject(s, "", "")
}

// jwt finds and checks the request's token: in the host when it can read
// and check it there (weft.jws_verify, with the host's cache; only from
// s's own callback, where the host's current context is s), else in the
// VM through the VM's cache. ok is false when there is no token.
func (f filter) jwt(s *sdk.Stream, current bool) (cl claims, ok bool, err error) {
	p := f.p
	if current && p.keys != nil {
		if cl, ok, err, done := p.v.jws.checkRequest(&p.v, p.keys); done {
			return cl, ok, err
		}
	}
	tok, ok := f.token(s)
	if !ok {
		return nil, false, nil
	}
	cl, err = p.validate(tok)
	return cl, true, err
}

// validate checks a token, through the cache of tokens already validated.
func (p *plugin) validate(tok string) (claims, error) {
	now := sdk.Now()
	if cl, ok := p.cache.get(tok, now); ok {
		return cl, nil
	}
	cl, exp, err := p.v.validate(tok, p.keys, now)
	if err != nil {
		return nil, err
	}
	p.cache.put(tok, cl, exp.Add(p.cfg.skew), now)
	return cl, nil
}

// edit applies edits (sets and removes only) to h, keeping their storage
// for the next request. A batch stops at a refused write (a claim value
// the host finds invalid); then every edit is applied again one by one,
// errors ignored, so the writes after it (the token's removal) still
// happen, as they did before the writes were batched.
func (f filter) edit(h sdk.HeaderMap, edits []sdk.HeaderEdit) {
	if err := h.Edit(edits...); err != nil {
		sdk.Debugf("auth: header edit: %v", err)
		for _, e := range edits {
			_ = h.Edit(e)
		}
	}
	clear(edits) // no claim value kept past the request
	f.p.edits = edits[:0]
}

// reject answers with the configured status and a Bearer challenge
// (RFC 6750): no error attributes when credentials are missing.
func (f filter) reject(s *sdk.Stream, code, desc string) bool {
	c := f.p.cfg
	f.p.denied.Inc()
	challenge := c.challenge
	if code != "" {
		challenge += `, error="` + code + `"`
		if desc != "" {
			challenge += `, error_description="` + desc + `"`
		}
	}
	body := "unauthorized\n"
	if c.RejectStatus == 403 {
		body = "forbidden\n"
	}
	_ = s.SendLocalResponseDetails(c.RejectStatus, "weft_auth_denied", []byte(body), [][2]string{
		{"www-authenticate", challenge}, {"content-type", "text/plain"},
	})
	return false
}

// safeHeaderValue refuses control characters (a claim must not smuggle a
// header line).
func safeHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
