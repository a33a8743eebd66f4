package client

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestSplitURLs(t *testing.T) {
	got, err := SplitURLs(" https://a:7070/, https://b:7070 ,,")
	if err != nil || len(got) != 2 || got[0] != "https://a:7070" || got[1] != "https://b:7070" {
		t.Fatalf("got %q, %v", got, err)
	}
	for in, want := range map[string]string{
		"":                           "no control plane address",
		"https://a:7070,a:7070":      `control plane address 2 "a:7070": want https://HOST[:PORT]`,
		"ftp://a":                    `control plane address 1 "ftp://a": want https://HOST[:PORT]`,
		"https://a:7070,http://[::1": `control plane address 2 "http://[::1"`,
	} {
		if _, err := SplitURLs(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SplitURLs(%q): %v, want %q", in, err, want)
		}
	}
}

// TestReplicasOfOneName checks that a host name resolving to several
// addresses becomes one replica per address, each dialling its own address
// while the request (and TLS) keep the name.
func TestReplicasOfOneName(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Host) })}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	base := "http://control.mesh.test:" + port
	r := newReplicas([]string{base, "http://127.0.0.1:1"}, nil)
	defer r.close()
	r.lookup = func(_ context.Context, host string) ([]string, error) {
		if host != "control.mesh.test" {
			t.Errorf("looked up %q", host)
		}
		return []string{"127.0.0.1", "127.0.0.2"}, nil
	}
	r.resolve(context.Background())
	if len(r.list) != 3 || r.list[0].dial != "127.0.0.1:"+port || r.list[1].dial != "127.0.0.2:"+port || r.list[2].dial != "" {
		t.Fatalf("replicas %v", r.list)
	}
	resp, err := r.current().hc.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "control.mesh.test:"+port {
		t.Fatalf("the replica saw Host %q, want the URL's name", b)
	}

	// Re-resolving keeps the replica in use and its connections.
	r.next()
	in := r.current()
	r.resolve(context.Background())
	if r.current() != in {
		t.Fatalf("after re-resolving, in use %v, want %v", r.current(), in)
	}

	// A module URL naming any replica is fetched from the one in use.
	if u, ok := r.moduleURL("http://127.0.0.1:1/v1/modules/ab"); !ok || u != base+"/v1/modules/ab" {
		t.Fatalf("moduleURL: %q %v", u, ok)
	}
	if _, ok := r.moduleURL("https://cdn.example/m.wasm"); ok {
		t.Fatal("a module elsewhere mapped onto the control plane")
	}
}
