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

	"github.com/weftmesh/weft/control/store"
)

// Replicas on etcd share one bootstrap admin token: its digest is kept
// at PREFIX/admin/token, as join tokens are kept (hashed, never the
// token). The replica that finds no digest there makes it, from its
// DATA/admin.token (written first if absent); every replica accepts the
// token whose digest is there, and follows the key, so a replaced or
// deleted one takes effect on every replica at once.
const sharedAdminKey = "token"

// sharedAdmin is the value at PREFIX/admin/token.
type sharedAdmin struct {
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"created_at"`
}

// adminKV is the key space of the shared admin token.
func (s *Server) adminKV() *store.EtcdKV { return store.NewEtcdKV(s.o.Etcd, s.o.EtcdPrefix, "admin") }

// shareAdmin settles the bootstrap admin token with the other replicas:
// this replica's own DATA/admin.token if no replica made one before,
// else the one they share (this replica then has no token file of its
// own, or keeps one that matches it, copied by the operator).
func (s *Server) shareAdmin() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	kv := s.adminKV()
	path := filepath.Join(s.o.DataDir, adminTokenFile)
	tok := ""
	if _, err := os.Stat(path); err == nil {
		if tok, _, err = bootstrapAdmin(s.o.DataDir, s.log); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("admin token: %w", err)
	}
	shared, err := readSharedAdmin(ctx, kv)
	if err != nil {
		return err
	}
	if shared == "" {
		made := false
		if tok == "" {
			if tok, _, err = bootstrapAdmin(s.o.DataDir, s.log); err != nil {
				return err
			}
			made = true
		}
		v, _ := json.Marshal(sharedAdmin{SHA256: hashToken(tok), CreatedAt: time.Now().UTC()})
		created, err := kv.Create(ctx, sharedAdminKey, v)
		if err != nil || !created {
			if made { // not the mesh's: another replica's was first, or none is
				_ = os.Remove(path)
				tok = ""
			}
		}
		if err != nil {
			return fmt.Errorf("admin token: sharing it through etcd: %w", err)
		}
		if created {
			s.log.Info("this replica's admin token is the one every replica accepts (its digest is shared through etcd)", zap.String("path", path))
			shared = hashToken(tok)
		} else if shared, err = readSharedAdmin(ctx, kv); err != nil {
			return err
		}
	}
	if tok != "" && hashToken(tok) != shared {
		s.log.Warn("DATA/admin.token is not the admin token the replicas share through etcd (another replica made that one first): it is not accepted; use that replica's admin.token (copy it here to have this replica print it)",
			zap.String("path", path))
		tok = ""
	}
	if tok != "" {
		s.adminToken, s.adminFile = tok, path
	}
	s.users.admin.Store(&shared)
	return nil
}

// followSharedAdmin keeps the accepted admin token digest the one in etcd
// until ctx ends.
func (s *Server) followSharedAdmin(ctx context.Context) {
	s.adminKV().Watch(ctx, sharedAdminKey, func(v []byte) {
		d := ""
		if v != nil {
			var a sharedAdmin
			if err := json.Unmarshal(v, &a); err != nil || a.SHA256 == "" {
				s.log.Error("the shared admin token in etcd does not decode; no bootstrap admin token is accepted", zap.Error(err))
			} else {
				d = a.SHA256
			}
		}
		old := s.users.admin.Swap(&d)
		switch {
		case old != nil && *old == d:
		case d == "":
			s.log.Warn("the shared admin token was deleted from etcd: no bootstrap admin token is accepted until a replica starts and makes a new one")
		default:
			s.log.Info("the shared admin token changed in etcd; the new one is accepted, the old one no longer")
		}
	})
}

// readSharedAdmin is the digest at PREFIX/admin/token ("" when none).
func readSharedAdmin(ctx context.Context, kv *store.EtcdKV) (string, error) {
	v, _, err := kv.Get(ctx, sharedAdminKey)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if v == nil {
		return "", nil
	}
	var a sharedAdmin
	if err := json.Unmarshal(v, &a); err != nil || a.SHA256 == "" {
		return "", fmt.Errorf("admin token: the shared digest in etcd does not decode (%v); delete the key admin/token under the etcd prefix to have a new token made", err)
	}
	return a.SHA256, nil
}
