package control_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weftmesh/weft/control"
	"github.com/weftmesh/weft/control/internal/etcdtest"
	"github.com/weftmesh/weft/control/internal/meshtest"
)

func TestCommandStoreFlags(t *testing.T) {
	t.Setenv("WEFT_CA_ENCRYPTION_KEY", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-store", "http://127.0.0.1:2379"}, "want etcd://HOST:PORT"},
		{[]string{"-store", "etcd://127.0.0.1"}, `endpoint "127.0.0.1": want HOST:PORT`},
		{[]string{"-store", "etcd://127.0.0.1:2379"}, "give -etcd-ca"},
		{[]string{"-store", "etcd://127.0.0.1:2379", "-etcd-insecure", "-etcd-ca", "x.pem"}, "contradicts"},
		{[]string{"-store", "etcd://127.0.0.1:2379", "-etcd-ca", "/nonexistent/ca.pem"}, "-etcd-ca: open /nonexistent/ca.pem"},
		{[]string{"-store", "etcd://127.0.0.1:2379", "-etcd-insecure", "-etcd-prefix", "weft"}, "-etcd-prefix"},
		{[]string{"-etcd-ca", "ca.pem"}, "need -store etcd://"},
		{[]string{"-store", "etcd://127.0.0.1:2379", "-etcd-insecure"}, "-ca-encryption-key-file FILE or $WEFT_CA_ENCRYPTION_KEY"},
	} {
		args := append([]string{"-addr", "127.0.0.1:0", "-data", t.TempDir(), "-log-level", "error"}, c.args...)
		err := control.Command(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error with %q", c.args, err, c.want)
		}
	}
}

// weft control -store etcd://… with client certificates, on an etcd that
// requires them.
func TestCommandOnEtcdWithTLS(t *testing.T) {
	files := etcdtest.NewTLSFiles(t)
	c := etcdtest.StartWith(t, 1, etcdtest.Options{TLS: &files})
	keyFile := filepath.Join(t.TempDir(), "seal.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(caKey(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, ep := range c.Endpoints() {
		eps = append(eps, strings.TrimPrefix(ep, "https://"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuffer
	data := t.TempDir()
	var ended error // set before finished is closed
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ended = control.Command(ctx, []string{"-addr", "127.0.0.1:0", "-data", data, "-log-level", "warn",
			"-store", "etcd://" + strings.Join(eps, ","), "-etcd-ca", files.CA, "-etcd-cert", files.ClientCert, "-etcd-key", files.ClientKey,
			"-ca-encryption-key-file", keyFile}, &out, &errw)
	}()
	// The command stops whatever the outcome, before etcd's and the data
	// directory's cleanups (registered earlier) run.
	t.Cleanup(func() { cancel(); <-finished })
	meshtest.Eventually(t, "the command to start on etcd", func() bool {
		select {
		case <-finished:
			t.Fatalf("the command ended: %v\n%s", ended, errw.String())
		default:
		}
		return strings.Contains(out.String(), "store etcd://") && strings.Contains(out.String(), "admin token")
	})
	cancel()
	<-finished
	if ended != nil {
		t.Fatalf("shutdown: %v", ended)
	}
}
