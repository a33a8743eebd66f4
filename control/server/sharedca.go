package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/control/ca"
	"github.com/weftmesh/weft/control/store"
)

// caSecret names the sealed copy of the CA's files in etcd.
const caSecret = "ca"

// notShared are CA directory files not sealed into etcd: with etcd, join
// tokens live in etcd's tokens/ keys (ca.OpenSharedTokens), and a
// tokens.json left from a single-machine start is not shared.
var notShared = map[string]bool{"tokens.json": true}

// openSharedCA opens the CA that every replica on the same etcd shares. The
// first replica creates it and seals its files (keys included) into etcd
// with the operator's key; the others unseal them into their own DATA/ca.
// Both happen under the "ca" leader lock, so two replicas starting at once
// cannot create two CAs.
func (s *Server) openSharedCA(ctx context.Context, co ca.Options) (*ca.CA, error) {
	if len(s.o.CAEncryptionKey) == 0 {
		return nil, fmt.Errorf("control: with -store etcd://… the CA's signing key is kept in etcd, encrypted: give every replica the same key with -ca-encryption-key-file FILE or $%s (make one with: head -c32 /dev/urandom | base64)", store.EncryptionKeyEnv)
	}
	sec, err := store.NewSecrets(s.o.Etcd, s.o.EtcdPrefix, s.o.CAEncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	s.secrets = sec
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var c *ca.CA
	err = store.Leader(ctx, s.o.Etcd, s.o.EtcdPrefix, caSecret, func(ctx context.Context) error {
		b, ok, err := sec.Get(ctx, caSecret)
		if err != nil {
			return err
		}
		if ok {
			if err := unpackDir(co.Dir, b); err != nil {
				return fmt.Errorf("unsealing the CA from etcd into %s: %w", co.Dir, err)
			}
		}
		if c, err = ca.Open(co); err != nil {
			return err
		}
		if ok {
			s.log.Info("CA loaded from etcd (sealed)", zap.String("dir", co.Dir))
			return nil
		}
		s.log.Info("CA created and sealed into etcd", zap.String("dir", co.Dir))
		return s.sealCA(ctx, co.Dir)
	})
	if err != nil {
		return nil, fmt.Errorf("control: shared CA: %w", err)
	}
	return c, nil
}

// followCA reloads the CA when another replica seals a new one (a
// rotation), so every replica trusts and signs with the same roots.
func (s *Server) followCA(ctx context.Context) {
	s.secrets.Watch(ctx, caSecret, func(b []byte, err error) {
		if err == nil {
			err = unpackDir(s.ca.Dir(), b)
		}
		if err == nil {
			err = s.ca.Reload()
		}
		if err == nil {
			err = s.writeCAFile()
		}
		if err != nil {
			s.log.Error("following the CA sealed in etcd failed; this replica keeps its CA", zap.Error(err))
		}
	})
}

// sealCA writes the CA directory, sealed, to etcd.
func (s *Server) sealCA(ctx context.Context, dir string) error {
	b, err := packDir(dir)
	if err != nil {
		return err
	}
	return s.secrets.Put(ctx, caSecret, b)
}

// rotateShared runs a CA rotation as the "ca" leader and seals the result,
// so two replicas never rotate at once and a replica started later loads
// the rotated CA.
func (s *Server) rotateShared() error {
	if s.secrets == nil {
		return s.ca.Rotate()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return store.Leader(ctx, s.o.Etcd, s.o.EtcdPrefix, caSecret, func(ctx context.Context) error {
		if err := s.ca.Rotate(); err != nil {
			return err
		}
		return s.sealCA(ctx, s.ca.Dir())
	})
}

func packDir(dir string) ([]byte, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for _, e := range ents {
		if !e.Type().IsRegular() || notShared[e.Name()] || e.Name()[0] == '.' {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files[e.Name()] = b
	}
	return json.Marshal(files)
}

func unpackDir(dir string, b []byte) error {
	var files map[string][]byte
	if err := json.Unmarshal(b, &files); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, content := range files {
		if name != filepath.Base(name) || name == "." || name == ".." || notShared[name] {
			return errors.New("a file name with a path in it: " + name)
		}
		if err := writePrivateFile(filepath.Join(dir, name), content); err != nil {
			return err
		}
	}
	return nil
}

// writePrivateFile writes a 0600 file atomically.
func writePrivateFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	if err := errors.Join(werr, tmp.Chmod(0o600), tmp.Sync(), tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
