package ca

import (
	"path/filepath"
	"testing"
	"time"
)

// TestCertificateTTLBounds: a certificate TTL from 1s to MaxTTL, both ends
// included, opens a CA; anything outside is refused.
func TestCertificateTTLBounds(t *testing.T) {
	cases := []struct {
		ttl time.Duration
		ok  bool
	}{
		{time.Second, true},
		{MaxTTL, true},
		{time.Second - 1, false},
		{MaxTTL + 1, false},
		{-time.Hour, false},
	}
	for _, c := range cases {
		_, err := Open(Options{Dir: t.TempDir(), TrustDomain: "weft.test", TTL: c.ttl})
		if (err == nil) != c.ok {
			t.Errorf("ttl %v: err %v, want ok=%v", c.ttl, err, c.ok)
		}
	}
}

// TestTokenBounds: a join token's TTL runs from 1s to MaxTokenTTL and its
// uses from 1 to MaxTokenUses, both ends included.
func TestTokenBounds(t *testing.T) {
	toks, err := OpenTokens(filepath.Join(t.TempDir(), "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ttl  time.Duration
		uses int
		ok   bool
	}{
		{time.Second, 1, true},
		{MaxTokenTTL, MaxTokenUses, true},
		{time.Second - 1, 1, false},
		{MaxTokenTTL + 1, 1, false},
		{time.Hour, MaxTokenUses + 1, false},
		{time.Hour, -1, false},
	}
	for _, c := range cases {
		_, exp, err := toks.Issue("node-1", c.ttl, c.uses)
		if (err == nil) != c.ok {
			t.Errorf("ttl %v uses %d: err %v, want ok=%v", c.ttl, c.uses, err, c.ok)
			continue
		}
		if err == nil {
			if d := time.Until(exp); d > c.ttl || d < c.ttl-time.Minute {
				t.Errorf("ttl %v: expires in %v", c.ttl, d)
			}
		}
	}
}
