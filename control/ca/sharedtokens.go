package ca

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"time"
)

// TokenKV keeps join tokens where every control-plane replica sees them
// (etcd: store.EtcdKV), one value per node. Rev is the value's version
// (etcd's mod revision), 0 for none.
type TokenKV interface {
	Get(ctx context.Context, key string) (value []byte, rev int64, err error)
	// List returns every value.
	List(ctx context.Context) ([][]byte, error)
	// Put writes value, to be dropped ttl from now.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Swap writes value only if key is still at rev, keeping its ttl;
	// false when another writer changed it first.
	Swap(ctx context.Context, key string, value []byte, rev int64) (bool, error)
	Delete(ctx context.Context, key string) error
}

// kvTimeout bounds one shared-token operation.
const kvTimeout = 10 * time.Second

// OpenSharedTokens keeps join tokens in kv, so a token minted through one
// replica is redeemed through any, and a single-use token obtains one
// certificate across all of them: a use is spent with a compare-and-swap
// on the token's value. As with OpenTokens, only digests are stored; a
// token's value expires from kv a day after the token does.
func OpenSharedTokens(kv TokenKV) *Tokens {
	return &Tokens{kv: kv, now: time.Now}
}

func (t *Tokens) issueShared(node, tok string, ttl time.Duration, uses int) (string, time.Time, error) {
	e := tokenEntry{SHA256: digest(tok), Node: node, ExpiresAt: t.now().Add(ttl).UTC(), UsesLeft: uses}
	b, err := json.Marshal(e)
	if err != nil {
		return "", time.Time{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	// One key per node: this replaces the node's earlier token.
	if err := t.kv.Put(ctx, node, b, ttl+keepExpired); err != nil {
		return "", time.Time{}, fmt.Errorf("join tokens: %w", err)
	}
	return tok, e.ExpiresAt, nil
}

// redeemShared is Redeem on kv. use runs before the use is spent; when
// another replica spends the last use first, the swap fails, the token is
// read again and refused, and what use made (a signed certificate) is
// dropped, never sent.
func (t *Tokens) redeemShared(node, tok string, use func() error) error {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	got := digest(tok)
	for {
		b, rev, err := t.kv.Get(ctx, node)
		if err != nil {
			return fmt.Errorf("join tokens: %w", err)
		}
		var e *tokenEntry
		if rev != 0 {
			e = &tokenEntry{}
			if err := json.Unmarshal(b, e); err != nil {
				return fmt.Errorf("join tokens: node %q: %w", node, err)
			}
			if subtle.ConstantTimeCompare([]byte(e.SHA256), []byte(got)) != 1 {
				e = nil
			}
		}
		if e == nil {
			// Perhaps another node's token: say so, as on one replica.
			if e, err = t.findShared(ctx, got); err != nil {
				return err
			}
		}
		if err := t.refuse(e, node); err != nil {
			return err
		}
		if err := use(); err != nil {
			return err
		}
		e.UsesLeft--
		e.UsedAt = t.now().UTC()
		nb, err := json.Marshal(e)
		if err != nil {
			return err
		}
		ok, err := t.kv.Swap(ctx, node, nb, rev)
		if err != nil {
			return fmt.Errorf("join tokens: spending a use: %w", err)
		}
		if ok {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("join tokens: %w", err)
		}
	}
}

// findShared looks for the entry of digest d among every node's.
func (t *Tokens) findShared(ctx context.Context, d string) (*tokenEntry, error) {
	vals, err := t.kv.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("join tokens: %w", err)
	}
	var found *tokenEntry
	for _, b := range vals {
		var e tokenEntry
		if json.Unmarshal(b, &e) != nil {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(e.SHA256), []byte(d)) == 1 {
			found = &e
		}
	}
	return found, nil
}
