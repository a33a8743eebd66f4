package bench

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/weftmesh/weft/proxy/config"
)

// The first-party plugins' scenarios: `weft` with one plugin on the
// listener, built at setup from plugins/NAME (so they run from the source
// tree only). Each is compared with `weft` in the same run.

// Auth plugin settings of weft-plugin-auth: an inline HS256 key set and a
// token the load generator sends with every request.
const (
	benchIssuer   = "https://bench.local"
	benchAudience = "bench"
	benchSubject  = "bench-client"
	benchKID      = "bench"
)

// WeftPluginAuth runs the auth plugin validating an HS256 JWT against an
// inline JWKS (one oct key generated at setup); the load generator sends a
// valid token (Authorization: Bearer ...) with every request, so this is
// the cost with the plugin's validated-token cache on (its default), and
// the sub claim is copied into x-user.
func WeftPluginAuth() Scenario {
	return pluginScenario("auth", "JWT HS256, inline JWKS, a valid token on every request (token cache on)", true,
		func(env *Env) (string, error) {
			secret := make([]byte, 32)
			if _, err := rand.Read(secret); err != nil {
				return "", err
			}
			token, err := hs256Token(secret, map[string]any{
				"iss": benchIssuer, "aud": benchAudience, "sub": benchSubject,
				"iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix(),
			})
			if err != nil {
				return "", err
			}
			env.AddLoadHeader("Authorization", "Bearer "+token)
			return jsonConfig(map[string]any{
				"jwt": map[string]any{
					"issuer":            benchIssuer,
					"audiences":         []string{benchAudience},
					"algorithms":        []string{"HS256"},
					"jwks":              map[string]any{"keys": []any{map[string]string{"kty": "oct", "kid": benchKID, "alg": "HS256", "k": b64url(secret)}}},
					"claims_to_headers": []any{map[string]string{"claim": "sub", "header": "x-user"}},
				},
			})
		}, nil)
}

// WeftPluginAuthRS256 runs the auth plugin validating an RS256 JWT (a
// 2048-bit key generated at setup, inline JWKS) with its validated-token
// cache off (cache_size -1, which also turns off the host's cache of valid
// tokens): every request pays what a token never seen before costs, the
// whole check by the host (weft.jws_verify: decoding, signature, exp/nbf)
// and the guest's iss/aud checks.
func WeftPluginAuthRS256() Scenario {
	s := pluginScenario("auth", "JWT RS256, inline JWKS, token cache off: every request checked as a new token", false,
		func(env *Env) (string, error) {
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				return "", err
			}
			token, err := rs256Token(key, map[string]any{
				"iss": benchIssuer, "aud": benchAudience, "sub": benchSubject,
				"iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix(),
			})
			if err != nil {
				return "", err
			}
			env.AddLoadHeader("Authorization", "Bearer "+token)
			e := big.NewInt(int64(key.E)).Bytes()
			return jsonConfig(map[string]any{
				"jwt": map[string]any{
					"issuer":     benchIssuer,
					"audiences":  []string{benchAudience},
					"algorithms": []string{"RS256"},
					"cache_size": -1,
					"jwks": map[string]any{"keys": []any{map[string]string{
						"kty": "RSA", "kid": benchKID, "alg": "RS256", "n": b64url(key.N.Bytes()), "e": b64url(e),
					}}},
					"claims_to_headers": []any{map[string]string{"claim": "sub", "header": "x-user"}},
				},
			})
		}, nil)
	s.Name += "-rs256"
	return s
}

// WeftPluginFault runs the fault plugin configured to inject nothing: an
// abort at 0% (status 503), so every request pays for the filter and its
// draw, and none is aborted or delayed.
func WeftPluginFault() Scenario {
	return pluginScenario("fault", "abort.percent 0: draws for every request, injects nothing", false,
		func(env *Env) (string, error) {
			return jsonConfig(map[string]any{"abort": map[string]any{"percent": 0, "status": 503}})
		}, nil)
}

// WeftPluginRouting runs the routing plugin splitting requests 90/10
// between versions v1 and v2 at random (no sticky key); the route table
// sends x-weft-version: v2 to cluster "v2" and the rest to "up", both the
// same upstream.
func WeftPluginRouting() Scenario {
	return pluginScenario("routing", "random 90/10 split v1/v2 into x-weft-version, matched by the route table", false,
		func(env *Env) (string, error) {
			return jsonConfig(map[string]any{"split": map[string]any{"versions": []any{
				map[string]any{"version": "v1", "weight": 90}, map[string]any{"version": "v2", "weight": 10},
			}}})
		},
		func(cfg *config.Config) {
			vh := &cfg.Listeners[0].VirtualHosts[0]
			v2 := config.Route{
				Match: config.Match{Prefix: "/", Headers: []config.HeaderMatcher{{Name: "x-weft-version", Exact: "v2"}}},
				Route: &config.RouteAction{Cluster: "v2"},
			}
			vh.Routes = append([]config.Route{v2}, vh.Routes...)
			cfg.Clusters = append(cfg.Clusters, config.Cluster{Name: "v2", Endpoints: cfg.Clusters[0].Endpoints})
		})
}

// WeftPluginTelemetry runs the telemetry plugin with status classes, no
// sampled logs (sample_rate 0): counters and histograms for every request.
func WeftPluginTelemetry() Scenario {
	return pluginScenario("telemetry", "counters by route and status class, size and latency histograms, no request logs", false,
		func(env *Env) (string, error) {
			return jsonConfig(map[string]any{"prefix": "bench", "status_classes": true, "sample_rate": 0})
		}, nil)
}

// pluginScenario is weft with the first-party plugin plugins/NAME on its
// listener; config returns the plugin's config (JSON) and may set load
// headers; routes, when set, changes the proxy config.
func pluginScenario(name, what string, quick bool, pluginConfig func(env *Env) (string, error), routes func(*config.Config)) Scenario {
	return Scenario{
		Name:        "weft-plugin-" + name,
		Description: fmt.Sprintf("client → weft proxy with the %s plugin (%s) → upstream", name, what),
		Compare:     "weft",
		Quick:       quick,
		Setup: func(ctx context.Context, env *Env) (string, error) {
			module, err := env.BuildGuest(ctx, ".", "./plugins/"+name)
			if err != nil {
				return "", err
			}
			pc, err := pluginConfig(env)
			if err != nil {
				return "", fmt.Errorf("scenario %q: plugin config: %w", env.name, err)
			}
			return startWeftWithFilter(ctx, env, config.Filter{Name: name, Module: config.Module{Path: module}, Config: config.RawConfig(pc)}, routes)
		},
	}
}

// WeftFilter runs weft with a user's filter module (path to a .wasm) and
// its configuration (passed to the guest as is) on the listener; compare
// with "weft" in the same run. `weft bench filter` runs the two.
func WeftFilter(module, pluginConfig, rootID string, trusted bool) Scenario {
	return Scenario{
		Name:        "weft-filter",
		Description: fmt.Sprintf("client → weft proxy with %s → upstream", filepath.Base(module)),
		Compare:     "weft",
		Setup: func(ctx context.Context, env *Env) (string, error) {
			abs, err := filepath.Abs(module)
			if err != nil {
				return "", fmt.Errorf("scenario %q: %w", env.name, err)
			}
			if err := checkWasmFile(abs); err != nil {
				return "", fmt.Errorf("scenario %q: %w", env.name, err)
			}
			f := config.Filter{Name: "filter", Module: config.Module{Path: abs}, Config: config.RawConfig(pluginConfig), RootID: rootID, Trusted: trusted}
			return startWeftWithFilter(ctx, env, f, nil)
		},
	}
}

// checkWasmFile fails unless path is a readable file starting with the
// Wasm magic number.
func checkWasmFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("filter module: %w", err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := f.Read(magic); err != nil || string(magic) != "\x00asm" {
		return fmt.Errorf("filter module %s: not a WebAssembly binary (no \\0asm header)", path)
	}
	return nil
}

// startWeftWithFilter starts weft with f on the listener (after routes, if
// set, changed the config) and returns the URL to load.
func startWeftWithFilter(ctx context.Context, env *Env, f config.Filter, routes func(*config.Config)) (string, error) {
	up, err := env.StartUpstream(ctx, env.UpstreamConfig())
	if err != nil {
		return "", err
	}
	listen, _, err := env.startWeftFor(ctx, up, func(cfg *config.Config) {
		if routes != nil {
			routes(cfg)
		}
		addFilters(cfg, 1, func(int) config.Filter { return f })
	})
	if err != nil {
		return "", err
	}
	return "http://" + listen + "/", nil
}

func jsonConfig(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// hs256Token signs claims as a compact JWT with HMAC-SHA256 and kid
// benchKID.
// rs256Token signs claims with key (RS256, kid benchKID).
func rs256Token(key *rsa.PrivateKey, claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": benchKID})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signed := b64url(header) + "." + b64url(payload)
	sum := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signed + "." + b64url(sig), nil
}

func hs256Token(secret []byte, claims map[string]any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT", "kid": benchKID})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signed := b64url(header) + "." + b64url(payload)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signed))
	return signed + "." + b64url(m.Sum(nil)), nil
}
