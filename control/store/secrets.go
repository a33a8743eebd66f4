package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// EncryptionKeyEnv names the environment variable that may hold the
// secrets' encryption key (base64 of 32 bytes) instead of a file.
const EncryptionKeyEnv = "WEFT_CA_ENCRYPTION_KEY"

// ReadEncryptionKey reads the operator's 32-byte key, base64-encoded, from
// file, or from $WEFT_CA_ENCRYPTION_KEY when file is "".
func ReadEncryptionKey(file string) ([]byte, error) {
	text, from := os.Getenv(EncryptionKeyEnv), "$"+EncryptionKeyEnv
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("-ca-encryption-key-file: %w", err)
		}
		text, from = string(b), file
	}
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("%s: want the base64 of 32 random bytes (make one with: head -c32 /dev/urandom | base64)", from)
	}
	return key, nil
}

// Secrets keeps small secrets (the CA's signing keys) in etcd, each value
// sealed with AES-256-GCM under the operator's key and bound to its etcd
// key, so etcd, its backups and its snapshots never hold them in plaintext,
// and a value cannot be moved to another key unnoticed.
type Secrets struct {
	cli    *clientv3.Client
	prefix string
	aead   cipher.AEAD
}

// sealedV1 starts every sealed value: a format version, then the nonce,
// then the ciphertext.
const sealedV1 = "weft-sealed-v1:"

// NewSecrets keeps secrets under PREFIX/secrets/ (prefix as in EtcdOptions).
func NewSecrets(cli *clientv3.Client, prefix string, key []byte) (*Secrets, error) {
	if len(key) != 32 {
		return nil, errors.New("secrets: the encryption key must be 32 bytes")
	}
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Secrets{cli: cli, prefix: prefix, aead: aead}, nil
}

func (s *Secrets) key(name string) string { return s.prefix + "secrets/" + name }

func (s *Secrets) seal(name string, plain []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	out := append([]byte(sealedV1), nonce...)
	return s.aead.Seal(out, nonce, plain, []byte(s.key(name)))
}

func (s *Secrets) open(name string, sealed []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(string(sealed), sealedV1)
	if !ok || len(rest) < s.aead.NonceSize() {
		return nil, fmt.Errorf("etcd key %s: not a sealed value", s.key(name))
	}
	b := []byte(rest)
	plain, err := s.aead.Open(nil, b[:s.aead.NonceSize()], b[s.aead.NonceSize():], []byte(s.key(name)))
	if err != nil {
		return nil, fmt.Errorf("etcd key %s: cannot decrypt it: this replica's CA encryption key is not the one it was sealed with (every replica needs the same -ca-encryption-key-file)", s.key(name))
	}
	return plain, nil
}

// Get returns a secret, and false when it is not set.
func (s *Secrets) Get(ctx context.Context, name string) ([]byte, bool, error) {
	resp, err := s.cli.Get(ctx, s.key(name))
	if err != nil {
		return nil, false, etcdError("reading "+s.key(name), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	b, err := s.open(name, resp.Kvs[0].Value)
	return b, err == nil, err
}

// Put seals and writes a secret.
func (s *Secrets) Put(ctx context.Context, name string, plain []byte) error {
	if _, err := s.cli.Put(ctx, s.key(name), string(s.seal(name, plain))); err != nil {
		return etcdError("writing "+s.key(name), err)
	}
	return nil
}

// Watch calls fn with a secret each time it is written from now on, until
// ctx ends; a value that does not decrypt comes with an error.
func (s *Secrets) Watch(ctx context.Context, name string, fn func(plain []byte, err error)) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range s.cli.Watch(wctx, s.key(name)) {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypePut {
					fn(s.open(name, ev.Kv.Value))
				}
			}
		}
		cancel()
		sleep(ctx, 100*time.Millisecond)
	}
}

// Leader runs single-writer jobs: fn runs only while this process holds
// the lock PREFIX/leader/NAME (an etcd concurrency mutex on a session
// lease), so among all replicas one at a time does the job. When the
// lease is lost (this replica cut off from etcd) ctx passed to fn ends.
func Leader(ctx context.Context, cli *clientv3.Client, prefix, name string, fn func(ctx context.Context) error) error {
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(10), concurrency.WithContext(ctx))
	if err != nil {
		return etcdError("opening a session for "+name, err)
	}
	defer sess.Close()
	mu := concurrency.NewMutex(sess, prefix+"leader/"+name)
	if err := mu.Lock(ctx); err != nil {
		return etcdError("electing the "+name+" leader", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx)
	}()
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-jctx.Done():
		}
	}()
	return fn(jctx)
}
