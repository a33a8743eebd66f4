package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// weftProc runs the binary in the background until the test ends.
func weftProc(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	return weftProcDir(t, bin, "", env, args...)
}

// weftProcDir is weftProc in the working directory dir.
func weftProcDir(t *testing.T, bin, dir string, env []string, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testWriter{t: t, prefix: args[0] + ": "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	return cmd, bufio.NewScanner(out)
}

type testWriter struct {
	t      *testing.T
	prefix string
}

func (w *testWriter) Write(b []byte) (int, error) {
	if testing.Verbose() {
		w.t.Logf("%s%s", w.prefix, strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func httpStatus(url, host string) int {
	req, _ := http.NewRequest("GET", url, nil)
	if host != "" {
		req.Host = host
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestReadmeMesh runs README.md's "Run a mesh" with examples/mesh: the
// control plane, ctl apply, join tokens, two sidecars on one machine (each
// on the admin address its Sidecar resource names), set-weight, status,
// and status after a control-plane restart. Only the ports are changed, to
// free ones.
func TestReadmeMesh(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a mesh")
	}
	bin := buildWeft(t)
	dir := t.TempDir()
	example, err := os.ReadFile("../../examples/mesh/reviews.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The apps: two upstreams for reviews v1 and v2.
	ports := map[string]string{}
	for _, p := range []string{"127.0.0.1:9081", "127.0.0.1:9082"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		name := p
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, name) })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		ports[p] = ln.Addr().String()
	}
	for _, p := range []string{"127.0.0.1:15001", "127.0.0.1:15901", "127.0.0.1:15002", "127.0.0.1:15902"} {
		ports[p] = freeAddr(t)
	}
	meshFile := string(example)
	for from, to := range ports {
		if !strings.Contains(meshFile, from) {
			t.Fatalf("examples/mesh/reviews.yaml no longer has %s", from)
		}
		meshFile = strings.ReplaceAll(meshFile, from, to)
	}
	meshPath := filepath.Join(dir, "reviews.yaml")
	if err := os.WriteFile(meshPath, []byte(meshFile), 0o644); err != nil {
		t.Fatal(err)
	}

	data, controlAddr := filepath.Join(dir, "data"), freeAddr(t)
	var control *exec.Cmd
	startControl := func() {
		var out *bufio.Scanner
		control, out = weftProc(t, bin, nil, "control", "-data", data, "-addr", controlAddr, "-log-level", "warn")
		ready := make(chan struct{})
		go func() {
			for out.Scan() {
				if strings.HasPrefix(out.Text(), "admin token:") {
					close(ready)
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(20 * time.Second):
			t.Fatal("weft control did not start")
		}
	}
	startControl()
	url := "https://" + controlAddr
	env := []string{"WEFT_SERVER=" + url, "WEFT_CA=" + filepath.Join(data, "ca.pem"), "WEFT_TOKEN_FILE=" + filepath.Join(data, "admin.token")}
	ctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"ctl"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output() // stdout only, as with `> web-1.token`
		if err != nil {
			t.Fatalf("weft ctl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return string(out)
	}
	ctl("apply", "-f", meshPath)
	if out := ctl("get", "sidecars"); !strings.Contains(out, "web-1") || !strings.Contains(out, "api") {
		t.Fatalf("ctl get sidecars:\n%s", out)
	}
	for _, node := range []string{"web-1", "web-2"} {
		tok := filepath.Join(dir, node+".token")
		if err := os.WriteFile(tok, []byte(ctl("token", node)), 0o600); err != nil {
			t.Fatal(err)
		}
		weftProc(t, bin, nil, "proxy", "--control", url, "--control-ca", filepath.Join(data, "ca.pem"),
			"--node", node, "--join-token-file", tok,
			"--snapshot-cache", filepath.Join(dir, node+"-cache"), "--wasm-cache", "", "--log-level", "warn")
	}
	// Each sidecar on its own admin address (from its Sidecar resource),
	// and both route to reviews.
	for _, s := range [][2]string{{"127.0.0.1:15001", "127.0.0.1:15901"}, {"127.0.0.1:15002", "127.0.0.1:15902"}} {
		out, adm := ports[s[0]], ports[s[1]]
		waitFor(t, "admin "+adm+" ready", 20*time.Second, func() bool { return httpStatus("http://"+adm+"/ready", "") == 200 })
		waitFor(t, "reviews through "+out, 10*time.Second, func() bool { return httpStatus("http://"+out+"/", "reviews") == 200 })
	}
	ctl("set-weight", "reviews", "v1=50,v2=50")
	inSync := func() bool {
		cmd := exec.Command(bin, "ctl", "status")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return err == nil && strings.Count(string(out), " yes ") == 2
	}
	waitFor(t, "both sidecars in sync", 10*time.Second, inSync)

	// Restart the control plane: the reconnected sidecars show in sync.
	if err := control.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	_ = control.Wait()
	startControl()
	waitFor(t, "both sidecars in sync after a control-plane restart", 10*time.Second, inSync)
}
