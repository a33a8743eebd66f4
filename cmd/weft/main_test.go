package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/proxy/loopback"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	buildOut  []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildWeft builds the binary once per test run.
func buildWeft(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "weft-bin")
		if buildErr != nil {
			return
		}
		buildOut, buildErr = exec.Command("go", "build", "-o", filepath.Join(buildDir, "weft"), ".").CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return filepath.Join(buildDir, "weft")
}

// freeAddr is a loopback address for a server that must be told its port
// before it binds (loopback.FreeAddr: below the ephemeral range).
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := loopback.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildWeft(t)
	dir := t.TempDir()

	// An upstream for the proxy. It holds each request until released, so
	// the test decides when a request is in flight, not a timer.
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseAll()
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		fmt.Fprint(w, "upstream says hi")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(ln)
	defer up.Close()

	listen, adminAddr := freeAddr(t), freeAddr(t)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(fmt.Sprintf(`
admin: {address: %q}
listeners:
  - name: main
    address: %q
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes:
          - match: {prefix: /}
            route: {cluster: up}
clusters:
  - name: up
    endpoints: [{address: %q}]
`, adminAddr, listen, ln.Addr().String())), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listeners:\n  - name: main\n    address: nowhere\n    virtual_hosts: []\n    colour: blue\n"), 0o644)

	t.Run("validate", func(t *testing.T) {
		if out, err := exec.Command(bin, "validate", good).CombinedOutput(); err != nil {
			t.Fatalf("good file refused: %v\n%s", err, out)
		}
		out, err := exec.Command(bin, "validate", bad).CombinedOutput()
		if err == nil {
			t.Fatal("bad file accepted")
		}
		if !strings.Contains(string(out), "bad.yaml:5") || !strings.Contains(string(out), "colour") {
			t.Fatalf("error does not name file, line and field:\n%s", out)
		}
	})

	t.Run("proxy drains on SIGTERM", func(t *testing.T) {
		cmd := exec.Command(bin, "proxy", "-c", good, "-wasm-cache", "", "-log-level", "warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get("http://" + adminAddr + "/ready")
			if err == nil && resp.StatusCode == 200 {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("proxy never became ready")
			}
			time.Sleep(50 * time.Millisecond)
		}
		type result struct {
			status int
			err    error
		}
		res := make(chan result, 1)
		go func() {
			resp, err := http.Get("http://" + listen + "/x")
			if err != nil {
				res <- result{err: err}
				return
			}
			resp.Body.Close()
			res <- result{status: resp.StatusCode}
		}()
		select {
		case <-arrived: // the request is now waiting on the upstream
		case r := <-res:
			t.Fatalf("request answered before reaching the upstream: %d %v", r.status, r.err)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// Draining has begun once the listener refuses new connections;
		// only then may the in-flight request finish.
		deadline = time.Now().Add(10 * time.Second)
		for {
			c, err := net.Dial("tcp", listen)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatal("the listener still accepts 10s after SIGTERM")
			}
			time.Sleep(10 * time.Millisecond)
		}
		releaseAll()
		r := <-res
		if r.err != nil || r.status != 200 {
			t.Fatalf("in-flight request during SIGTERM: %d %v", r.status, r.err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("proxy exited with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("proxy did not exit after SIGTERM")
		}
	})
}
