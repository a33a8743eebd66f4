package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config is the auth filter's configuration (the filter's `config:`).
type Config struct {
	// JWT validates bearer tokens; nil disables JWT.
	JWT *JWTConfig `json:"jwt,omitempty"`
	// APIKeys maps static keys to identities; nil disables API keys.
	APIKeys *APIKeyConfig `json:"api_keys,omitempty"`
	// RejectStatus is the status of a refused request: 401 (default) or 403.
	RejectStatus int `json:"reject_status,omitempty"`
	// Realm goes into WWW-Authenticate (default "weft").
	Realm string `json:"realm,omitempty"`
	// BypassPaths are path prefixes let through without credentials.
	BypassPaths []string `json:"bypass_paths,omitempty"`
	// AllowMissing lets requests without any credential through (credentials
	// that are present are still checked).
	AllowMissing bool `json:"allow_missing,omitempty"`
}

// JWTConfig describes which tokens are accepted.
type JWTConfig struct {
	// Issuer, when set, must equal the iss claim.
	Issuer string `json:"issuer,omitempty"`
	// Audiences, when set, must contain one of the aud claim's values.
	Audiences []string `json:"audiences,omitempty"`
	// Algorithms allowed (default RS256, ES256; HS256 must be listed).
	Algorithms []string `json:"algorithms,omitempty"`
	// JWKS is an inline key set (a JSON object {"keys": [...]}).
	JWKS json.RawMessage `json:"jwks,omitempty"`
	// RemoteJWKS fetches the key set through an HTTP call-out.
	RemoteJWKS *RemoteJWKS `json:"remote_jwks,omitempty"`
	// ClockSkew tolerated on exp and nbf (default 60s).
	ClockSkew Duration `json:"clock_skew,omitempty"`
	// Header carries the token (default "authorization", with prefix
	// "Bearer ").
	Header string `json:"header,omitempty"`
	// Prefix before the token in Header (default "Bearer " for
	// authorization, else none).
	Prefix *string `json:"prefix,omitempty"`
	// ClaimsToHeaders copies claims into request headers (any incoming
	// header of those names is removed first).
	ClaimsToHeaders []ClaimHeader `json:"claims_to_headers,omitempty"`
	// Forward keeps the token on the request to the upstream (default
	// false: the header is removed after validation).
	Forward bool `json:"forward,omitempty"`
	// CacheSize bounds the cache of validated tokens per VM (default 1024;
	// -1 disables it).
	CacheSize int `json:"cache_size,omitempty"`
}

// RemoteJWKS is where the key set is fetched from.
type RemoteJWKS struct {
	// Cluster is the proxy cluster serving the key set.
	Cluster string `json:"cluster"`
	// Path of the key set (default "/.well-known/jwks.json").
	Path string `json:"path,omitempty"`
	// Authority is the Host of the request (default the cluster name).
	Authority string `json:"authority,omitempty"`
	// Refresh is how often the keys are fetched again (default 5m).
	Refresh Duration `json:"refresh,omitempty"`
	// Timeout of one fetch (default 5s).
	Timeout Duration `json:"timeout,omitempty"`
}

// ClaimHeader copies one claim to one header.
type ClaimHeader struct {
	Claim  string `json:"claim"`
	Header string `json:"header"`
}

// APIKeyConfig maps static API keys to identities.
type APIKeyConfig struct {
	// Header carrying the key (default "x-api-key").
	Header string `json:"header,omitempty"`
	// Keys maps a key to the identity it stands for.
	Keys map[string]string `json:"keys"`
	// IdentityHeader receives the identity (default "x-weft-identity").
	IdentityHeader string `json:"identity_header,omitempty"`
}

// Duration is a time.Duration written as "90s" in JSON.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q: negative", s)
	}
	*d = Duration(v)
	return nil
}

// compiled is a validated Config with defaults applied.
type compiled struct {
	Config
	algs       map[string]bool
	inlineKeys *keySet
	tokenHdr   string
	prefix     string
	skew       time.Duration
	refresh    time.Duration
	timeout    time.Duration
	apiHdr     string
	identHdr   string
	challenge  string
	cacheSize  int
	// claimHdrsDistinct: no two claims_to_headers name the same header,
	// so each can be set or removed on its own (one host call, not two).
	claimHdrsDistinct bool
}

// parseConfig reads and validates raw (JSON).
func parseConfig(raw []byte) (*compiled, error) {
	var c Config
	if len(raw) == 0 {
		return nil, errors.New("config: empty: configure jwt and/or api_keys")
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if c.JWT == nil && c.APIKeys == nil {
		return nil, errors.New("config: neither jwt nor api_keys is set")
	}
	cc := &compiled{Config: c}
	switch c.RejectStatus {
	case 0:
		cc.RejectStatus = 401
	case 401, 403:
	default:
		return nil, fmt.Errorf("config: reject_status %d: want 401 or 403", c.RejectStatus)
	}
	if cc.Realm == "" {
		cc.Realm = "weft"
	}
	cc.challenge = `Bearer realm="` + cc.Realm + `"`
	if j := c.JWT; j != nil {
		cc.algs = map[string]bool{}
		algs := j.Algorithms
		if len(algs) == 0 {
			algs = []string{"RS256", "ES256"}
		}
		for _, a := range algs {
			switch a {
			case "RS256", "ES256", "HS256":
				cc.algs[a] = true
			default:
				return nil, fmt.Errorf("config: jwt.algorithms: %q is not supported (RS256, ES256, HS256)", a)
			}
		}
		if len(j.JWKS) == 0 && j.RemoteJWKS == nil {
			return nil, errors.New("config: jwt: set jwks (inline) or remote_jwks")
		}
		if len(j.JWKS) > 0 {
			ks, err := parseJWKS(j.JWKS)
			if err != nil {
				return nil, fmt.Errorf("config: jwt.jwks: %w", err)
			}
			cc.inlineKeys = ks
		}
		if r := j.RemoteJWKS; r != nil {
			if r.Cluster == "" {
				return nil, errors.New("config: jwt.remote_jwks.cluster is required")
			}
			if r.Path == "" {
				r.Path = "/.well-known/jwks.json"
			}
			if r.Authority == "" {
				r.Authority = r.Cluster
			}
			cc.refresh = time.Duration(r.Refresh)
			if cc.refresh == 0 {
				cc.refresh = 5 * time.Minute
			}
			cc.timeout = time.Duration(r.Timeout)
			if cc.timeout == 0 {
				cc.timeout = 5 * time.Second
			}
		}
		cc.skew = time.Duration(j.ClockSkew)
		if j.ClockSkew == 0 {
			cc.skew = 60 * time.Second
		}
		cc.tokenHdr = strings.ToLower(j.Header)
		if cc.tokenHdr == "" {
			cc.tokenHdr = "authorization"
		}
		switch {
		case j.Prefix != nil:
			cc.prefix = *j.Prefix
		case cc.tokenHdr == "authorization":
			cc.prefix = "Bearer "
		}
		for i, ch := range j.ClaimsToHeaders {
			if ch.Claim == "" || ch.Header == "" {
				return nil, fmt.Errorf("config: jwt.claims_to_headers[%d]: claim and header are required", i)
			}
			j.ClaimsToHeaders[i].Header = strings.ToLower(ch.Header)
		}
		cc.claimHdrsDistinct = true
		seen := map[string]bool{}
		for _, ch := range j.ClaimsToHeaders {
			if seen[ch.Header] {
				cc.claimHdrsDistinct = false
			}
			seen[ch.Header] = true
		}
		cc.cacheSize = j.CacheSize
		if cc.cacheSize == 0 {
			cc.cacheSize = 1024
		}
	}
	if a := c.APIKeys; a != nil {
		if len(a.Keys) == 0 {
			return nil, errors.New("config: api_keys.keys is empty")
		}
		cc.apiHdr = strings.ToLower(a.Header)
		if cc.apiHdr == "" {
			cc.apiHdr = "x-api-key"
		}
		cc.identHdr = strings.ToLower(a.IdentityHeader)
		if cc.identHdr == "" {
			cc.identHdr = "x-weft-identity"
		}
	}
	return cc, nil
}
