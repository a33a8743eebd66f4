package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// tokenPrefix marks join tokens so they are recognisable in logs and
// secret scanners.
const tokenPrefix = "wjt_"

// Tokens are the per-node join tokens: a sidecar proves it is node N by
// presenting N's token. Only sha256 digests are stored (DIR/tokens.json).
type Tokens struct {
	path string
	mu   sync.Mutex
	// byNode maps a node id to the hex sha256 of its token.
	byNode map[string]string
}

// OpenTokens loads the token digests at path (missing: none).
func OpenTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path, byNode: map[string]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("join tokens: %w", err)
	}
	if err := json.Unmarshal(b, &t.byNode); err != nil {
		return nil, fmt.Errorf("join tokens: %s: %w", path, err)
	}
	return t, nil
}

// Issue makes a new token for node, replacing any earlier one, and returns
// it. The token is shown once; only its digest is kept.
func (t *Tokens) Issue(node string) (string, error) {
	if node == "" {
		return "", errors.New("join tokens: node id is empty")
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	t.mu.Lock()
	defer t.mu.Unlock()
	prev, had := t.byNode[node]
	t.byNode[node] = digest(tok)
	if err := t.saveLocked(); err != nil {
		if had {
			t.byNode[node] = prev
		} else {
			delete(t.byNode, node)
		}
		return "", err
	}
	return tok, nil
}

// Revoke removes node's token.
func (t *Tokens) Revoke(node string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byNode[node]; !ok {
		return nil
	}
	delete(t.byNode, node)
	return t.saveLocked()
}

// Check reports whether tok is node's token (constant time in the token).
func (t *Tokens) Check(node, tok string) bool {
	if !strings.HasPrefix(tok, tokenPrefix) {
		return false
	}
	t.mu.Lock()
	want, ok := t.byNode[node]
	t.mu.Unlock()
	got := digest(tok)
	return ok && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

func (t *Tokens) saveLocked() error {
	b, err := json.MarshalIndent(t.byNode, "", "  ")
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
