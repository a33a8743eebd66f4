package store

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdClientConfig says how to reach an etcd cluster.
type EtcdClientConfig struct {
	// Endpoints are host:port pairs (ParseEtcdURL).
	Endpoints []string
	// CAFile verifies etcd's serving certificates; CertFile and KeyFile
	// are this client's certificate (etcd --client-cert-auth).
	CAFile, CertFile, KeyFile string
	// Insecure talks plain HTTP to etcd: anyone on the path reads the mesh
	// and can rewrite it. For loopback development only.
	Insecure bool
	Logger   *zap.Logger
}

// ParseEtcdURL reads -store etcd://HOST:PORT,HOST:PORT,... into endpoints.
func ParseEtcdURL(s string) ([]string, error) {
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return nil, fmt.Errorf("-store %q: want etcd://HOST:PORT[,HOST:PORT...] (or no -store for the file store in -data)", s)
	}
	var eps []string
	for _, ep := range strings.Split(strings.TrimSuffix(rest, "/"), ",") {
		ep = strings.TrimSpace(ep)
		if ep == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(ep); err != nil || port == "" {
			return nil, fmt.Errorf("-store %q: endpoint %q: want HOST:PORT", s, ep)
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("-store %q: no etcd endpoint", s)
	}
	return eps, nil
}

// DialEtcd makes an etcd client: TLS unless Insecure, with a client
// certificate when given. The client connects lazily; the first request
// says whether etcd answers.
func DialEtcd(c EtcdClientConfig) (*clientv3.Client, error) {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("etcd: give both -etcd-cert and -etcd-key, or neither")
	}
	cfg := clientv3.Config{
		Endpoints:   c.Endpoints,
		DialTimeout: 5 * time.Second,
		// Find a dead member or a broken path within seconds, not at the
		// next write.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               c.Logger.Named("etcd"),
	}
	if c.Insecure {
		if c.CAFile != "" || c.CertFile != "" {
			return nil, errors.New("etcd: -etcd-insecure contradicts -etcd-ca/-etcd-cert")
		}
		c.Logger.Warn("talking plain HTTP to etcd (-etcd-insecure): anyone on the network path can read and rewrite the mesh")
		return clientv3.New(cfg)
	}
	if c.CAFile == "" {
		return nil, errors.New("etcd: give -etcd-ca (the CA of etcd's serving certificates) and usually -etcd-cert/-etcd-key, or -etcd-insecure for a plaintext development etcd")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("etcd: -etcd-ca: %w", err)
	}
	tc.RootCAs = x509.NewCertPool()
	if !tc.RootCAs.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("etcd: -etcd-ca %s: no PEM certificate in it", c.CAFile)
	}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd: -etcd-cert/-etcd-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	cfg.TLS = tc
	return clientv3.New(cfg)
}
