package ca

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// tokenPrefix marks join tokens so they are recognisable in logs and
// secret scanners.
const tokenPrefix = "wjt_"

// Join token limits.
const (
	// DefaultTokenTTL is how long a join token stays valid by default.
	DefaultTokenTTL = time.Hour
	// MaxTokenTTL bounds a join token's lifetime.
	MaxTokenTTL = 7 * 24 * time.Hour
	// MaxTokenUses bounds how many certificates one join token may obtain.
	MaxTokenUses = 100
)

// Why a join token is refused. A *TokenError wraps one of these.
var (
	ErrTokenUnknown   = errors.New("join token not recognised")
	ErrTokenExpired   = errors.New("join token expired")
	ErrTokenUsed      = errors.New("join token already used")
	ErrTokenOtherNode = errors.New("join token is for another node")
)

// TokenError is a refused join token: Err is one of the ErrToken*
// values, the message says what to do.
type TokenError struct {
	Err error
	Msg string
}

// Error is the message for the caller.
func (e *TokenError) Error() string { return e.Msg }

// Unwrap is the reason.
func (e *TokenError) Unwrap() error { return e.Err }

// tokenEntry is one join token on disk: only its digest is kept.
type tokenEntry struct {
	SHA256    string    `json:"sha256"`
	Node      string    `json:"node"`
	ExpiresAt time.Time `json:"expires_at"`
	UsesLeft  int       `json:"uses_left"`
	// UsedAt is when the token was last redeemed (so a replay can be
	// told from a wrong token).
	UsedAt time.Time `json:"used_at,omitzero"`
}

type tokenFile struct {
	Tokens []tokenEntry `json:"tokens"`
}

// Tokens are the join tokens: a sidecar proves it is node N, once, by
// presenting a token issued for N, to obtain its first certificate; it
// renews with that certificate. A token is bound to one node, expires, and
// may be redeemed a limited number of times (once by default). Only sha256
// digests are stored (DIR/tokens.json, mode 0600).
type Tokens struct {
	path     string
	mu       sync.Mutex
	byDigest map[string]*tokenEntry
	// kv, when set, keeps the tokens instead of path (OpenSharedTokens).
	kv TokenKV
	// now is the clock (tests move it).
	now func() time.Time
}

// OpenTokens loads the token digests at path (missing: none). Tokens of
// the earlier, reusable format are dropped: issue new ones.
func OpenTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path, byDigest: map[string]*tokenEntry{}, now: time.Now}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("join tokens: %w", err)
	}
	var f tokenFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("join tokens: %s: %w", path, err)
	}
	for i := range f.Tokens {
		e := f.Tokens[i]
		t.byDigest[e.SHA256] = &e
	}
	return t, nil
}

// Issue makes a new token for node valid for ttl (0: DefaultTokenTTL) and
// uses redemptions (0: one), replacing any earlier token of node, and
// returns it with its expiry. The token is shown once; only its digest is
// kept.
func (t *Tokens) Issue(node string, ttl time.Duration, uses int) (string, time.Time, error) {
	if node == "" {
		return "", time.Time{}, errors.New("node: the node id is empty")
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < time.Second || ttl > MaxTokenTTL {
		return "", time.Time{}, fmt.Errorf("ttl: %s is outside 1s..%s", ttl, MaxTokenTTL)
	}
	if uses == 0 {
		uses = 1
	}
	if uses < 1 || uses > MaxTokenUses {
		return "", time.Time{}, fmt.Errorf("uses: %d is outside 1..%d", uses, MaxTokenUses)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", time.Time{}, err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	if t.kv != nil {
		return t.issueShared(node, tok, ttl, uses)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	prev := t.copyLocked()
	for d, e := range t.byDigest {
		if e.Node == node {
			delete(t.byDigest, d)
		}
	}
	e := &tokenEntry{SHA256: digest(tok), Node: node, ExpiresAt: t.now().Add(ttl).UTC(), UsesLeft: uses}
	t.byDigest[e.SHA256] = e
	if err := t.saveLocked(); err != nil {
		t.byDigest = prev
		return "", time.Time{}, err
	}
	return tok, e.ExpiresAt, nil
}

// Revoke removes node's tokens.
func (t *Tokens) Revoke(node string) error {
	if t.kv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
		defer cancel()
		return t.kv.Delete(ctx, node)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	prev := t.copyLocked()
	for d, e := range t.byDigest {
		if e.Node == node {
			delete(t.byDigest, d)
		}
	}
	if err := t.saveLocked(); err != nil {
		t.byDigest = prev
		return err
	}
	return nil
}

// Redeem checks that tok is a live join token of node and, if use
// succeeds, spends one of its uses (saved before Redeem returns). A
// refused token returns a *TokenError and use is not called; use's error
// is returned as is and spends nothing. Redemptions are serialised, so a
// single-use token obtains one certificate however many requests race.
func (t *Tokens) Redeem(node, tok string, use func() error) error {
	if t.kv != nil {
		return t.redeemShared(node, tok, use)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.findLocked(tok)
	if err := t.refuse(e, node); err != nil {
		return err
	}
	if err := use(); err != nil {
		return err
	}
	prev := *e
	e.UsesLeft--
	e.UsedAt = t.now().UTC()
	if err := t.saveLocked(); err != nil {
		*e = prev
		return err
	}
	return nil
}

// refuse says why e (nil: no such token) cannot be redeemed by node now,
// or returns nil.
func (t *Tokens) refuse(e *tokenEntry, node string) error {
	now := t.now()
	switch {
	case e == nil:
		return &TokenError{Err: ErrTokenUnknown, Msg: "a valid join token is required (Authorization: Bearer TOKEN); this one is not recognised: mint one with weft ctl token " + node}
	case e.Node != node:
		return &TokenError{Err: ErrTokenOtherNode, Msg: fmt.Sprintf("this join token is for node %q, not %q", e.Node, node)}
	case !now.Before(e.ExpiresAt):
		return &TokenError{Err: ErrTokenExpired, Msg: fmt.Sprintf("the join token for node %q expired at %s; mint a new one with weft ctl token %s", node, e.ExpiresAt.Format(time.RFC3339), node)}
	case e.UsesLeft <= 0:
		return &TokenError{Err: ErrTokenUsed, Msg: fmt.Sprintf("the join token for node %q was already used at %s (join tokens are single-use; a joined sidecar renews with its certificate); mint a new one with weft ctl token %s", node, e.UsedAt.Format(time.RFC3339), node)}
	}
	return nil
}

// findLocked finds tok's entry, comparing digests in constant time.
func (t *Tokens) findLocked(tok string) *tokenEntry {
	if !strings.HasPrefix(tok, tokenPrefix) {
		return nil
	}
	got := digest(tok)
	var found *tokenEntry
	for d, e := range t.byDigest {
		if subtle.ConstantTimeCompare([]byte(d), []byte(got)) == 1 {
			found = e
		}
	}
	return found
}

func (t *Tokens) copyLocked() map[string]*tokenEntry {
	out := make(map[string]*tokenEntry, len(t.byDigest))
	for d, e := range t.byDigest {
		c := *e
		out[d] = &c
	}
	return out
}

// keepExpired is how long an expired token is remembered, so that its
// holder is told it expired rather than that it is unknown.
const keepExpired = 24 * time.Hour

// saveLocked writes the tokens, sorted; long-expired ones are dropped.
func (t *Tokens) saveLocked() error {
	now := t.now()
	f := tokenFile{Tokens: []tokenEntry{}}
	for d, e := range t.byDigest {
		if now.After(e.ExpiresAt.Add(keepExpired)) {
			delete(t.byDigest, d)
			continue
		}
		f.Tokens = append(f.Tokens, *e)
	}
	sort.Slice(f.Tokens, func(i, j int) bool { return f.Tokens[i].SHA256 < f.Tokens[j].SHA256 })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(t.path, b, 0o600); err != nil {
		return fmt.Errorf("join tokens: %w", err)
	}
	return nil
}

func digest(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}
