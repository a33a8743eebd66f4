package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/control/internal/etcdtest"
)

func newKey(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSecretsSealedInEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	cli := c.Client()
	ctx := context.Background()
	key := newKey(t)
	s, err := NewSecrets(cli, "", key)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("-----BEGIN PRIVATE KEY----- the root key")
	if err := s.Put(ctx, "ca", secret); err != nil {
		t.Fatal(err)
	}
	raw, err := cli.Get(ctx, "/weft/secrets/ca")
	if err != nil || len(raw.Kvs) != 1 {
		t.Fatal(err)
	}
	if bytes.Contains(raw.Kvs[0].Value, []byte("PRIVATE KEY")) {
		t.Fatal("the secret is stored in plaintext")
	}
	if got, ok, err := s.Get(ctx, "ca"); err != nil || !ok || !bytes.Equal(got, secret) {
		t.Fatalf("read back: %q %v %v", got, ok, err)
	}
	if _, ok, err := s.Get(ctx, "none"); err != nil || ok {
		t.Fatalf("a missing secret: %v %v", ok, err)
	}
	// Another key cannot read it.
	other, _ := NewSecrets(cli, "", newKey(t))
	if _, _, err := other.Get(ctx, "ca"); err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Fatalf("the wrong key: %v", err)
	}
	// A sealed value copied under another name does not open there.
	if _, err := cli.Put(ctx, "/weft/secrets/moved", string(raw.Kvs[0].Value)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, "moved"); err == nil {
		t.Fatal("a sealed value opened under another key name")
	}
}

func TestReadEncryptionKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	k := newKey(t)
	if err := os.WriteFile(good, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadEncryptionKey(good); err != nil || !bytes.Equal(got, k) {
		t.Fatalf("a good key file: %v", err)
	}
	short := filepath.Join(dir, "short")
	_ = os.WriteFile(short, []byte(base64.StdEncoding.EncodeToString(k[:16])), 0o600)
	if _, err := ReadEncryptionKey(short); err == nil || !strings.Contains(err.Error(), "32 random bytes") {
		t.Fatalf("a 16-byte key: %v", err)
	}
	t.Setenv(EncryptionKeyEnv, base64.StdEncoding.EncodeToString(k))
	if got, err := ReadEncryptionKey(""); err != nil || !bytes.Equal(got, k) {
		t.Fatalf("the key from the environment: %v", err)
	}
	t.Setenv(EncryptionKeyEnv, "")
	if got, err := ReadEncryptionKey(""); err != nil || got != nil {
		t.Fatalf("no key: %v %v", got, err)
	}
}

// Leader is mutual exclusion across processes: jobs of two "replicas"
// never overlap.
func TestLeaderOneAtATime(t *testing.T) {
	c := etcdtest.Start(t, 1)
	var running, overlaps, done atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		cli := c.Client()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := Leader(ctx, cli, "", "job", func(ctx context.Context) error {
				if running.Add(1) > 1 {
					overlaps.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
				running.Add(-1)
				done.Add(1)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if overlaps.Load() != 0 || done.Load() != 6 {
		t.Fatalf("%d overlaps, %d jobs done", overlaps.Load(), done.Load())
	}
}
