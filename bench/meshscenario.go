package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weftmesh/weft/proxy/config"
)

// The SPIFFE IDs of the two chained sidecars (trust domain bench.local).
const (
	BenchIDA = "spiffe://bench.local/ns/default/sa/a"
	BenchIDB = "spiffe://bench.local/ns/default/sa/b"
)

// WeftMTLS chains two weft sidecars over mTLS: client → sidecar A
// (outbound listener, plaintext) → mTLS → sidecar B (inbound listener,
// tls strict) → upstream. The identities are files: a throwaway CA and one
// SVID per sidecar, generated at setup. A checks that B is BenchIDB. CPU
// is the sum of both sidecars (the report also splits it). Compare with
// weft-2hop-plain, the same chain in plaintext.
func WeftMTLS() Scenario {
	return Scenario{
		Name:        "weft-mtls",
		Description: "client → weft A → mTLS (file SVIDs, server ID checked) → weft B (inbound, strict) → upstream",
		Compare:     "weft-2hop-plain",
		Quick:       true,
		Setup:       func(ctx context.Context, env *Env) (string, error) { return setupTwoHops(ctx, env, true) },
	}
}

// Weft2HopPlain is WeftMTLS without TLS: the same two sidecars, chained in
// plaintext. The mTLS cost is weft-mtls against this one, in the same run.
func Weft2HopPlain() Scenario {
	return Scenario{
		Name:        "weft-2hop-plain",
		Description: "client → weft A → plaintext → weft B (inbound) → upstream",
		Compare:     "weft",
		Quick:       true,
		Setup:       func(ctx context.Context, env *Env) (string, error) { return setupTwoHops(ctx, env, false) },
	}
}

func setupTwoHops(ctx context.Context, env *Env, mtls bool) (string, error) {
	up, err := env.StartUpstream(ctx, env.UpstreamConfig())
	if err != nil {
		return "", err
	}
	var addrs [4]string // A's listener and admin, B's listener and admin
	for i := range addrs {
		if addrs[i], err = FreeAddr(); err != nil {
			return "", err
		}
	}
	listenA, adminA, listenB, adminB := addrs[0], addrs[1], addrs[2], addrs[3]

	b := WeftConfig(listenB, adminB, up)
	b.Listeners[0].Name, b.Listeners[0].Direction = "inbound", "inbound"
	a := WeftConfig(listenA, adminA, listenB)
	a.Listeners[0].Name, a.Listeners[0].Direction = "outbound", "outbound"
	a.Clusters[0].Name = "b"
	a.Listeners[0].VirtualHosts[0].Routes[0].Route.Cluster = "b"
	if mtls {
		files, err := writeMeshIdentities(env)
		if err != nil {
			return "", err
		}
		b.Listeners[0].TLS = &config.ListenerTLS{Mode: "strict",
			CertFile: files.certB, KeyFile: files.keyB, CAFile: files.ca}
		a.Clusters[0].TLS = &config.ClusterTLS{Mode: "mtls", ServerIDs: []string{BenchIDB},
			CertFile: files.certA, KeyFile: files.keyA, CAFile: files.ca}
	}
	if _, err := env.StartWeft(ctx, "sidecar-b", b); err != nil {
		return "", err
	}
	pa, err := env.StartWeft(ctx, "sidecar-a", a)
	if err != nil {
		return "", err
	}
	// Both report ready on their own; this proves the chain (and, with
	// mTLS, the handshake and the server ID check) answers end to end.
	target := "http://" + listenA + "/"
	if err := env.WaitHTTP(ctx, target, pa, func(s int) bool { return s == fasthttp.StatusOK }); err != nil {
		return "", fmt.Errorf("%w\nsidecar-b log:\n%s", err, env.LogTail("sidecar-b", 20))
	}
	return target, nil
}

// meshFiles are the PEM files of the two sidecars' identities.
type meshFiles struct {
	ca, certA, keyA, certB, keyB string
}

// writeMeshIdentities generates a throwaway CA (ECDSA P-256, valid for a
// day) and an SVID for each sidecar (URI SAN BenchIDA / BenchIDB, client
// and server auth), and writes them into the scenario's directory.
func writeMeshIdentities(env *Env) (meshFiles, error) {
	var f meshFiles
	fail := func(err error) (meshFiles, error) {
		return meshFiles{}, fmt.Errorf("scenario %q: mesh identities: %w", env.name, err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"weft bench"}, CommonName: "weft bench CA"},
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: "bench.local"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fail(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fail(err)
	}
	if f.ca, err = env.WriteFile("ca.pem", pemBlock("CERTIFICATE", caDER)); err != nil {
		return fail(err)
	}
	for i, id := range []string{BenchIDA, BenchIDB} {
		u, err := url.Parse(id)
		if err != nil {
			return fail(err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fail(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)),
			Subject:      pkix.Name{Organization: []string{"weft bench"}},
			URIs:         []*url.URL{u},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return fail(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fail(err)
		}
		name := string(rune('a' + i))
		cert, err := env.WriteFile(name+".pem", pemBlock("CERTIFICATE", der))
		if err != nil {
			return fail(err)
		}
		keyPath, err := env.WriteFile(name+"-key.pem", pemBlock("PRIVATE KEY", keyDER))
		if err != nil {
			return fail(err)
		}
		if i == 0 {
			f.certA, f.keyA = cert, keyPath
		} else {
			f.certB, f.keyB = cert, keyPath
		}
	}
	return f, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
