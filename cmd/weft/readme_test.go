package main

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readmeCommand is one command of a shell block in README.md.
type readmeCommand struct {
	Section string   // the "## " heading above the block
	Line    string   // the line it is on, continuations joined
	Env     []string // leading NAME=VALUE words
	Args    []string // the words, quotes removed; Args[0] is the program
	Stdout  string   // the file after '>', if any
	// Background is true for a command ended by '&'.
	Background bool
}

// String is the command as a reader would type it again.
func (c readmeCommand) String() string {
	return strings.Join(append(append([]string{}, c.Env...), c.Args...), " ")
}

// readmeCommands reads every command of README.md's ```sh blocks: lines
// joined at a trailing '\', comments cut, split at ';', '&&', '&' and a
// subshell's parentheses, words split as a POSIX shell does for the
// quoting README uses ('…' and "…", no expansions).
func readmeCommands(t *testing.T) []readmeCommand {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []readmeCommand
	section, inBlock, pending := "", false, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !inBlock && strings.HasPrefix(line, "## "):
			section = strings.TrimPrefix(line, "## ")
		case !inBlock && strings.TrimSpace(line) == "```sh":
			inBlock = true
		case inBlock && strings.TrimSpace(line) == "```":
			inBlock = false
		case inBlock:
			if l := strings.TrimRight(line, " "); strings.HasSuffix(l, "\\") {
				pending += strings.TrimSuffix(l, "\\") + " "
				continue
			}
			full := strings.Join(strings.Fields(pending+line), " ")
			pending = ""
			cmds, err := splitShellLine(full)
			if err != nil {
				t.Fatalf("README.md: %q: %v", full, err)
			}
			for i := range cmds {
				cmds[i].Section, cmds[i].Line = section, full
			}
			out = append(out, cmds...)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("README.md has no ```sh block")
	}
	return out
}

var envWord = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

// splitShellLine splits one line into commands.
func splitShellLine(line string) ([]readmeCommand, error) {
	var (
		cmds  []readmeCommand
		words []string
		word  strings.Builder
		inW   bool
		quote rune
	)
	endWord := func() {
		if inW {
			words = append(words, word.String())
		}
		word.Reset()
		inW = false
	}
	endCmd := func(bg bool) error {
		endWord()
		if len(words) == 0 {
			return nil
		}
		c := readmeCommand{Background: bg}
		for i := 0; i < len(words); i++ {
			w := words[i]
			switch {
			case w == ">":
				if i+1 == len(words) {
					return errorString("'>' without a file")
				}
				c.Stdout = words[i+1]
				i++
			case len(c.Args) == 0 && envWord.MatchString(w):
				c.Env = append(c.Env, w)
			default:
				c.Args = append(c.Args, w)
			}
		}
		words = nil
		cmds = append(cmds, c)
		return nil
	}
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				word.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inW = r, true
		case r == '#' && !inW:
			return cmds, endCmd(false) // a comment to the end of the line
		case r == ' ' || r == '\t':
			endWord()
		case r == '(' || r == ')' || r == ';':
			if err := endCmd(false); err != nil {
				return nil, err
			}
		case r == '&':
			if i+1 < len(rs) && rs[i+1] == '&' {
				i++
				if err := endCmd(false); err != nil {
					return nil, err
				}
				continue
			}
			if err := endCmd(true); err != nil {
				return nil, err
			}
		case r == '|':
			return nil, errorString("pipes are not supported here")
		default:
			word.WriteRune(r)
			inW = true
		}
	}
	if quote != 0 {
		return nil, errorString("unterminated quote")
	}
	return cmds, endCmd(false)
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestSplitShellLine(t *testing.T) {
	cmds, err := splitShellLine(`(umask 077; bin/weft ctl token a > a.token) # note`)
	if err != nil || len(cmds) != 2 || cmds[0].String() != "umask 077" || cmds[1].String() != "bin/weft ctl token a" || cmds[1].Stdout != "a.token" {
		t.Fatalf("%+v %v", cmds, err)
	}
	cmds, err = splitShellLine(`X=1 go build -o b ./p & bin/weft filter run f.wasm -config '{"a": "b c"}' -H "x: y"   # two`)
	if err != nil || len(cmds) != 2 || !cmds[0].Background || cmds[0].Env[0] != "X=1" || cmds[0].Args[0] != "go" ||
		strings.Join(cmds[1].Args, "|") != `bin/weft|filter|run|f.wasm|-config|{"a": "b c"}|-H|x: y` {
		t.Fatalf("%+v %v", cmds, err)
	}
}

// TestReadmeCommands holds every command in README.md's shell blocks to a
// check, so none can go stale unseen; a command this test does not know
// fails it. What each gets:
//
//   - run here, as written: the plugin build (its output moved to a temp
//     tree), both `weft validate`s, `weft filter run`, and the "Run a
//     sidecar" trio (bench upstream, proxy -c examples/sidecar.yaml, curl)
//     on free ports instead of the fixed ones;
//   - the "Run a mesh" block: run by TestReadmeMesh, which reads it from
//     this README (ports, /tmp/weft and token files moved);
//   - flags only: `go run ./cmd/weft demo` and `weft proxy -c
//     examples/grpc/sidecar.yaml` run with -h appended, which proves every
//     flag is the real command's and stops before serving (the demo itself
//     is run by examples/demo's tests; the gRPC example needs a gRPC
//     service on :50051, and examples' tests validate its config);
//   - run by CI (.ci/run), not here: `go test ./...`; `go build -o bin/weft
//     ./cmd/weft` is what buildWeft does, with another -o.
func TestReadmeCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and a plugin, and runs a sidecar")
	}
	bin := buildWeft(t)
	// A tree where README's relative paths hold: examples/ is the
	// repository's, build/ is this test's.
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	if err := os.Symlink(filepath.Join(root, "examples"), filepath.Join(tree, "examples")); err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for _, p := range []string{"127.0.0.1:8081", "127.0.0.1:15001", "127.0.0.1:9901"} {
		ports[p] = freeAddr(t)
	}
	moved := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			for from, to := range ports {
				a = strings.ReplaceAll(a, from, to)
			}
			out[i] = a
		}
		return out
	}
	weft := func(c readmeCommand, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = tree
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	flagsOnly := func(c readmeCommand, args []string) {
		t.Helper()
		if out, err := weft(c, append(args, "-h")...); err != nil {
			t.Errorf("README.md: %s: its flags do not parse: %v\n%s", c, err, out)
		}
	}
	checked := 0
	for _, c := range readmeCommands(t) {
		prog, args := c.Args[0], c.Args[1:]
		switch {
		case c.Section == "Run a mesh":
			checked++ // TestReadmeMesh
		case prog == "go" && c.String() == "go test ./...":
			checked++ // .ci/run
		case prog == "go" && c.String() == "go build -o bin/weft ./cmd/weft":
			checked++ // buildWeft
		case prog == "go" && len(args) >= 2 && args[0] == "run" && args[1] == "./cmd/weft":
			flagsOnly(c, args[2:])
			checked++
		case prog == "go" && len(args) > 0 && args[0] == "build":
			// The plugin: build it as written, into the test's tree.
			for i, a := range args {
				if i > 0 && args[i-1] == "-o" {
					args[i] = filepath.Join(tree, a)
				}
			}
			cmd := exec.Command("go", args...)
			cmd.Dir, cmd.Env = root, append(os.Environ(), c.Env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("README.md: %s: %v\n%s", c, err, out)
			}
			checked++
		case prog == "curl":
			url, host := args[len(args)-1], ""
			for i, a := range args {
				if a == "-H" && strings.HasPrefix(strings.ToLower(args[i+1]), "host: ") {
					host = args[i+1][len("host: "):]
				}
			}
			url = moved([]string{url})[0]
			waitFor(t, c.String(), 15*time.Second, func() bool { return httpStatus(url, host) == http.StatusOK })
			checked++
		case prog != "bin/weft":
			t.Errorf("README.md: %s: no test runs this command; teach TestReadmeCommands how to check it", c)
		case args[0] == "validate" || args[0] == "filter":
			if out, err := weft(c, args...); err != nil {
				t.Errorf("README.md: %s: %v\n%s", c, err, out)
			} else if args[0] == "filter" && !strings.Contains(out, "client received") {
				t.Errorf("README.md: %s ran no request:\n%s", c, out)
			}
			checked++
		case args[0] == "bench" && c.Background:
			weftProcIn(t, tree, bin, moved(args)...)
			checked++
		case args[0] == "proxy" && c.Section == "Run a sidecar":
			// examples/sidecar.yaml with its ports moved.
			a := moved(args)
			for i := range a {
				if i > 0 && a[i-1] == "-c" {
					raw, err := os.ReadFile(filepath.Join(tree, a[i]))
					if err != nil {
						t.Fatal(err)
					}
					a[i] = filepath.Join(tree, "sidecar.yaml")
					if err := os.WriteFile(a[i], []byte(moved([]string{string(raw)})[0]), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			weftProcIn(t, tree, bin, append(a, "-wasm-cache", "", "-log-level", "warn")...)
			checked++
		case args[0] == "proxy":
			flagsOnly(c, args)
			checked++
		default:
			t.Errorf("README.md: %s: no test runs this command; teach TestReadmeCommands how to check it", c)
		}
	}
	t.Logf("%d README commands checked", checked)
}

// weftProcIn runs the binary in dir in the background until the test
// ends, its output read and dropped.
func weftProcIn(t *testing.T, dir, bin string, args ...string) {
	t.Helper()
	_, out := weftProcDir(t, bin, dir, nil, args...)
	go func() {
		for out.Scan() {
		}
	}()
}
