package oci

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"sort"
	"strings"
	"sync"
	"time"
)

// Verifier runs Verify and remembers which manifests each key set has
// verified, so a config that names the same signed module again (every
// apply, every reload) does not read its signature from the registry again.
// A manifest digest names immutable content, so a signature checked once
// stays checked for the life of the process; a failure is not remembered.
// The zero value is ready to use and safe for concurrent use.
type Verifier struct {
	mu sync.Mutex
	ok map[string]bool // repository@manifest + " " + KeySetID
}

// Verify is Verify with the cache: nil at once when keys already verified
// repo@manifest.
func (v *Verifier) Verify(ctx context.Context, repo, manifest string, keys []crypto.PublicKey, src Source, timeout time.Duration) error {
	key := repo + "@" + manifest + " " + KeySetID(keys)
	v.mu.Lock()
	done := v.ok[key]
	v.mu.Unlock()
	if done {
		return nil
	}
	if err := Verify(ctx, repo, manifest, keys, src, timeout); err != nil {
		return err
	}
	v.mu.Lock()
	if v.ok == nil {
		v.ok = map[string]bool{}
	}
	v.ok[key] = true
	v.mu.Unlock()
	return nil
}

// KeySetID names a set of public keys by their digests, independent of
// order. Keys that cannot be encoded are left out.
func KeySetID(keys []crypto.PublicKey) string {
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			continue
		}
		s := sha256.Sum256(der)
		ids = append(ids, hex.EncodeToString(s[:8]))
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}
