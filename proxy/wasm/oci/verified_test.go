package oci

import (
	"context"
	"errors"
	"testing"
)

// requests is how many requests the registry has served so far.
func (r *testRegistry) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.log)
}

func TestVerifierRemembersOnlySuccess(t *testing.T) {
	reg := startRegistry(t, false)
	ref := reg.host + "/filters/v:v1"
	ctx := context.Background()
	manifest, err := Push(ctx, ref, fakeModule("verified"), PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repo := reg.host + "/filters/v"
	privA, pubA := keyPair(t)
	_, pubB := keyPair(t)
	keysA, _ := LoadPublicKeys(pubA)
	keysB, _ := LoadPublicKeys(pubB)
	var v Verifier

	// Unsigned: refused, and the refusal is not remembered.
	if err := v.Verify(ctx, repo, manifest, keysA, Source{}, 0); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned: %v", err)
	}
	signer, err := LoadPrivateKey(privA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(ctx, ref, signer, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(ctx, repo, manifest, keysA, Source{}, 0); err != nil {
		t.Fatalf("signed, after an earlier refusal: %v", err)
	}

	// Verified once: the same manifest and keys cost no registry request.
	before := reg.requests()
	if err := v.Verify(ctx, repo, manifest, keysA, Source{}, 0); err != nil {
		t.Fatal(err)
	}
	if n := reg.requests() - before; n != 0 {
		t.Fatalf("a verified manifest was checked again: %d registry requests", n)
	}

	// Another key set is a different question: asked, and refused.
	if err := v.Verify(ctx, repo, manifest, keysB, Source{}, 0); err == nil {
		t.Fatal("key B verified a manifest only key A signed")
	}
	if reg.requests() == before {
		t.Fatal("another key set was answered from the cache")
	}
	// Still refused the second time: failures are not cached as success.
	if err := v.Verify(ctx, repo, manifest, keysB, Source{}, 0); err == nil {
		t.Fatal("key B verified on the second try")
	}
}

func TestKeySetIDIgnoresOrder(t *testing.T) {
	_, pubA := keyPair(t)
	_, pubB := keyPair(t)
	a, _ := LoadPublicKeys(pubA)
	b, _ := LoadPublicKeys(pubB)
	ab, ba := KeySetID(append(append(a[:0:0], a...), b...)), KeySetID(append(append(b[:0:0], b...), a...))
	if ab != ba || ab == "" {
		t.Fatalf("KeySetID(a,b)=%q KeySetID(b,a)=%q", ab, ba)
	}
	if KeySetID(a) == KeySetID(b) || KeySetID(a) == ab {
		t.Fatalf("different key sets share an id: %q %q %q", KeySetID(a), KeySetID(b), ab)
	}
}
