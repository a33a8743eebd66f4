package main

import (
	"bufio"
	"io"
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

// TestReadmeMesh runs README.md's "Run a mesh" block, read from the
// README, with examples/mesh: the apps, the control plane, ctl apply, join
// tokens, two sidecars on one machine (web-1 on the admin address its
// Sidecar resource names, web-2 on --admin), set-weight, status, and
// status after a control-plane restart. What it changes: the ports (to
// free ones), /tmp/weft and the token files (to the test's directory),
// -addr for the control plane (its default port may be taken), and each
// sidecar's caches and log level.
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
	ports := map[string]string{}
	meshFile := string(example)
	for _, p := range []string{"127.0.0.1:9081", "127.0.0.1:9082", "127.0.0.1:15001", "127.0.0.1:15901", "127.0.0.1:15002", "127.0.0.1:15902"} {
		ports[p] = freeAddr(t)
		if !strings.Contains(meshFile, p) {
			t.Fatalf("examples/mesh/reviews.yaml no longer has %s", p)
		}
		meshFile = strings.ReplaceAll(meshFile, p, ports[p])
	}
	meshPath := filepath.Join(dir, "reviews.yaml")
	if err := os.WriteFile(meshPath, []byte(meshFile), 0o644); err != nil {
		t.Fatal(err)
	}
	data, controlAddr := filepath.Join(dir, "data"), freeAddr(t)
	ports["127.0.0.1:7070"] = controlAddr
	moved := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			for from, to := range ports {
				a = strings.ReplaceAll(a, from, to)
			}
			a = strings.ReplaceAll(a, "/tmp/weft", data)
			switch {
			case a == "examples/mesh/reviews.yaml":
				a = meshPath
			case strings.HasSuffix(a, ".token") && !strings.Contains(a, "/"):
				a = filepath.Join(dir, a)
			}
			out[i] = a
		}
		return out
	}

	var control *exec.Cmd
	var controlArgs []string
	startControl := func() {
		var out *bufio.Scanner
		control, out = weftProc(t, bin, nil, controlArgs...)
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
	var env []string
	ctl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output() // stdout only, as with `> web-1.token`
		if err != nil {
			t.Fatalf("weft %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return string(out)
	}
	ran := map[string]bool{}
	for _, c := range readmeCommands(t) {
		if c.Section != "Run a mesh" {
			continue
		}
		args := moved(c.Args[1:])
		switch {
		case c.Args[0] == "export":
			env = append(env, args...)
		case c.Args[0] == "umask":
			// The token files are written 0600 below.
		case c.Args[0] == "curl":
			url, host := args[len(args)-1], ""
			for i, a := range args {
				if a == "-H" && strings.HasPrefix(strings.ToLower(args[i+1]), "host: ") {
					host = args[i+1][len("host: "):]
				}
			}
			waitFor(t, c.String(), 20*time.Second, func() bool { return httpStatus(url, host) == http.StatusOK })
		case c.Args[0] != "bin/weft":
			t.Fatalf("README.md: %s: TestReadmeMesh does not know how to run it", c)
		case args[0] == "bench" && c.Background:
			weftProcIn(t, dir, bin, args...)
		case args[0] == "control":
			controlArgs = append(args, "-addr", controlAddr, "-log-level", "warn")
			startControl()
		case args[0] == "proxy" && c.Background:
			node := ""
			for i, a := range args {
				if i > 0 && args[i-1] == "--node" {
					node = a
				}
			}
			weftProc(t, bin, nil, append(args, "--snapshot-cache", filepath.Join(dir, node+"-cache"), "--wasm-cache", "", "--log-level", "warn")...)
		case args[0] == "ctl":
			out := ctl(args...)
			if c.Stdout != "" {
				if err := os.WriteFile(moved([]string{c.Stdout})[0], []byte(out), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if len(args) > 1 && args[1] == "get" && (!strings.Contains(out, "web-1") || !strings.Contains(out, "api")) {
				t.Fatalf("%s:\n%s", c, out)
			}
		default:
			t.Fatalf("README.md: %s: TestReadmeMesh does not know how to run it", c)
		}
		ran[strings.Join(c.Args[:min(3, len(c.Args))], " ")] = true
	}
	for _, want := range []string{"bin/weft control -data", "bin/weft ctl apply", "bin/weft ctl token", "bin/weft proxy --control", "bin/weft ctl set-weight", "bin/weft ctl status", "curl -H host: reviews"} {
		if !ran[want] {
			t.Fatalf("README.md's \"Run a mesh\" no longer has %q (ran %v)", want, ran)
		}
	}
	// Each sidecar on its own admin address (from its Sidecar resource),
	// and both route to reviews.
	for _, s := range [][2]string{{"127.0.0.1:15001", "127.0.0.1:15901"}, {"127.0.0.1:15002", "127.0.0.1:15902"}} {
		out, adm := ports[s[0]], ports[s[1]]
		waitFor(t, "admin "+adm+" ready", 20*time.Second, func() bool { return httpStatus("http://"+adm+"/ready", "") == 200 })
		waitFor(t, "reviews through "+out, 10*time.Second, func() bool { return httpStatus("http://"+out+"/", "reviews") == 200 })
	}
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
