package main

import (
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/sdk/sdktest"
)

// Unit tests of the filter logic on the emulated host (no Wasm).

func inlineConfig(t *testing.T, extra string) []byte {
	return []byte(`{"jwt":{"issuer":"https://idp.test","audiences":["api"],"algorithms":["RS256","ES256","HS256"],
		"claims_to_headers":[{"claim":"sub","header":"x-user"}],"jwks":` + jwksJSON(t) + `}` + extra + `}`)
}

func TestFilterAcceptsAndCopiesClaims(t *testing.T) {
	h := sdktest.New(t, sdktest.Options{PluginConfig: inlineConfig(t, "")})
	s := h.NewStream(sdktest.Req{Headers: [][2]string{
		{"authorization", "Bearer " + sign(t, "ES256", "ec1", std())}, {"x-user", "spoofed"},
	}})
	s.Run(nil)
	if !s.Forwarded() {
		t.Fatalf("not forwarded: %+v", s.Local)
	}
	if v, _ := s.Request.Header("x-user"); v != "user-1" {
		t.Errorf("x-user = %q", v)
	}
	if n := count(s.Request.Headers, "x-user"); n != 1 {
		t.Errorf("%d x-user headers", n)
	}
	if _, ok := s.Request.Header("authorization"); ok {
		t.Error("the token was forwarded")
	}
	if h.Metric("auth_allowed_total").Value != 1 {
		t.Error("auth_allowed_total not counted")
	}
}

func TestFilterRejections(t *testing.T) {
	h := sdktest.New(t, sdktest.Options{PluginConfig: inlineConfig(t, "")})
	expired := sign(t, "RS256", "rsa1", std("exp", time.Now().Add(-time.Hour).Unix()))
	for _, c := range []struct {
		name, auth, challenge string
	}{
		{"missing", "", `Bearer realm="weft"`},
		{"expired", "Bearer " + expired, `Bearer realm="weft", error="invalid_token", error_description="token expired"`},
		{"wrong audience", "Bearer " + sign(t, "RS256", "rsa1", std("aud", "x")), `error_description="wrong audience"`},
		{"not bearer", "Basic dXNlcjpwYXNz", `Bearer realm="weft"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hdrs [][2]string
			if c.auth != "" {
				hdrs = append(hdrs, [2]string{"authorization", c.auth})
			}
			s := h.NewStream(sdktest.Req{Headers: hdrs})
			s.Run(nil)
			if s.Forwarded() || s.Local == nil || s.Local.Status != 401 {
				t.Fatalf("forwarded %v local %+v", s.Forwarded(), s.Local)
			}
			if v, _ := s.Local.Header("www-authenticate"); !strings.Contains(v, c.challenge) {
				t.Errorf("www-authenticate %q lacks %q", v, c.challenge)
			}
		})
	}
	for _, l := range h.Logs() {
		if strings.Contains(l.Message, expired) || strings.Contains(l.Message, "eyJ") {
			t.Errorf("a token reached the logs: %q", l.Message)
		}
	}
}

func TestAPIKeysAnd403(t *testing.T) {
	h := sdktest.New(t, sdktest.Options{PluginConfig: []byte(`{"reject_status":403,"bypass_paths":["/healthz"],
		"api_keys":{"keys":{"k-123":"billing"}}}`)})
	s := h.NewStream(sdktest.Req{Headers: [][2]string{{"x-api-key", "k-123"}, {"x-weft-identity", "spoofed"}}})
	s.Run(nil)
	if id, _ := s.Request.Header("x-weft-identity"); !s.Forwarded() || id != "billing" || count(s.Request.Headers, "x-weft-identity") != 1 {
		t.Fatalf("forwarded %v identity %q", s.Forwarded(), id)
	}
	if _, ok := s.Request.Header("x-api-key"); ok {
		t.Error("the API key was forwarded")
	}
	s = h.NewStream(sdktest.Req{Headers: [][2]string{{"x-api-key", "wrong"}}})
	s.Run(nil)
	if s.Forwarded() || s.Local.Status != 403 {
		t.Fatalf("wrong key: forwarded %v local %+v", s.Forwarded(), s.Local)
	}
	s = h.NewStream(sdktest.Req{Path: "/healthz/live"})
	s.Run(nil)
	if !s.Forwarded() {
		t.Error("bypass path was not let through")
	}
}

func TestRemoteJWKSFetchedOnceThenCached(t *testing.T) {
	jwks := jwksJSON(t)
	fetches := 0
	h := sdktest.New(t, sdktest.Options{
		PluginConfig: []byte(`{"jwt":{"remote_jwks":{"cluster":"idp","refresh":"1m"}}}`),
		Clusters: map[string]func(sdktest.CallRequest) sdktest.CallResponse{
			"idp": func(r sdktest.CallRequest) sdktest.CallResponse {
				fetches++
				if r.Header(":path") != "/.well-known/jwks.json" || r.Header(":authority") != "idp" {
					return sdktest.CallResponse{Status: 404}
				}
				return sdktest.CallResponse{Status: 200, Body: []byte(jwks)}
			},
		},
	})
	if h.TickPeriod() != time.Minute {
		t.Errorf("tick period %v", h.TickPeriod())
	}
	good := "Bearer " + sign(t, "RS256", "rsa1", std())
	first := h.NewStream(sdktest.Req{Headers: [][2]string{{"authorization", good}}})
	second := h.NewStream(sdktest.Req{Headers: [][2]string{{"authorization", "Bearer " + sign(t, "RS256", "rsa1", std(), rsaKey2)}}})
	first.Run(nil)
	second.Run(nil)
	if !first.Paused() || !second.Paused() {
		t.Fatal("requests did not wait for the keys")
	}
	if len(h.PendingCalls()) != 1 {
		t.Fatalf("%d fetches in flight, want 1", len(h.PendingCalls()))
	}
	h.DeliverCalls()
	first.Continue()
	second.Continue()
	if !first.Forwarded() {
		t.Errorf("good token rejected: %+v", first.Local)
	}
	if second.Forwarded() || second.Local == nil || second.Local.Status != 401 {
		t.Errorf("bad signature: forwarded %v local %+v", second.Forwarded(), second.Local)
	}
	for i := 0; i < 5; i++ {
		s := h.NewStream(sdktest.Req{Headers: [][2]string{{"authorization", good}}})
		s.Run(nil)
		if !s.Forwarded() {
			t.Fatalf("request %d with cached keys: %+v", i, s.Local)
		}
	}
	if fetches != 1 || len(h.PendingCalls()) != 0 {
		t.Errorf("fetches = %d, pending %d", fetches, len(h.PendingCalls()))
	}
	h.Tick() // refresh
	h.DeliverCalls()
	if fetches != 2 {
		t.Errorf("tick did not refresh: fetches = %d", fetches)
	}
	if _, ok := h.SharedData("weft.auth.jwks:idp:idp/.well-known/jwks.json"); !ok {
		t.Error("keys not shared with other VMs")
	}
}

func TestRemoteJWKSFailure(t *testing.T) {
	h := sdktest.New(t, sdktest.Options{
		PluginConfig: []byte(`{"jwt":{"remote_jwks":{"cluster":"idp"}}}`),
		Clusters: map[string]func(sdktest.CallRequest) sdktest.CallResponse{
			"idp": func(sdktest.CallRequest) sdktest.CallResponse { return sdktest.CallResponse{Status: 500} },
		},
	})
	s := h.NewStream(sdktest.Req{Headers: [][2]string{{"authorization", "Bearer " + sign(t, "RS256", "rsa1", std())}}})
	s.Run(nil)
	h.DeliverCalls()
	s.Continue()
	if s.Forwarded() || s.Local == nil || s.Local.Status != 401 {
		t.Fatalf("forwarded %v local %+v", s.Forwarded(), s.Local)
	}
	if v, _ := s.Local.Header("www-authenticate"); !strings.Contains(v, "signing keys unavailable") {
		t.Errorf("www-authenticate = %q", v)
	}
	if h.Metric("auth_jwks_fetch_errors_total").Value != 1 {
		t.Error("fetch error not counted")
	}
}

func count(hs [][2]string, name string) int {
	n := 0
	for _, kv := range hs {
		if kv[0] == name {
			n++
		}
	}
	return n
}

// TestClaimHeadersNeverFromClient: a client's value of a claim header is
// dropped whether the token lacks the claim (distinct headers: replaced or
// removed one by one) or two claims share the header (all removed first,
// then the claims present set, the last one winning).
func TestClaimHeadersNeverFromClient(t *testing.T) {
	for _, c := range []struct {
		name, mapping string
		want          string // "" absent
	}{
		{"claim missing", `[{"claim":"sub","header":"x-user"},{"claim":"team","header":"x-team"}]`, ""},
		{"shared header, second claim missing", `[{"claim":"sub","header":"x-team"},{"claim":"team","header":"x-team"}]`, "user-1"},
		{"shared header, first claim missing", `[{"claim":"team","header":"x-team"},{"claim":"sub","header":"x-team"}]`, "user-1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := `{"jwt":{"issuer":"https://idp.test","audiences":["api"],"algorithms":["ES256"],
				"claims_to_headers":` + c.mapping + `,"jwks":` + jwksJSON(t) + `}}`
			h := sdktest.New(t, sdktest.Options{PluginConfig: []byte(cfg)})
			s := h.NewStream(sdktest.Req{Headers: [][2]string{
				{"authorization", "Bearer " + sign(t, "ES256", "ec1", std())}, {"x-team", "spoofed"},
			}})
			s.Run(nil)
			if !s.Forwarded() {
				t.Fatalf("not forwarded: %+v", s.Local)
			}
			v, ok := s.Request.Header("x-team")
			if c.want == "" && ok || c.want != "" && v != c.want || count(s.Request.Headers, "x-team") > 1 {
				t.Errorf("x-team = %q (present %v, %d values), want %q", v, ok, count(s.Request.Headers, "x-team"), c.want)
			}
		})
	}
}
