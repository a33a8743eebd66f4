// Package docs holds no code: its test checks that every relative link in
// docs/*.md and README.md resolves to a file in the repository and, when it
// names a heading (#anchor) of a Markdown file, to a heading there (as
// GitHub makes anchors).
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	linkRE   = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	inlineRE = regexp.MustCompile("`[^`]*`")
	// mdPathRE is a Markdown file named in a code span (`docs/wasm.md`).
	mdPathRE = regexp.MustCompile("`([A-Za-z0-9_./-]+\\.md)`")
)

func TestRelativeLinksResolve(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	checked := 0
	for _, f := range files {
		for _, l := range links(t, f) {
			target, anchor, _ := strings.Cut(l.target, "#")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			path := f
			if target != "" {
				path = filepath.Join(filepath.Dir(f), target)
				if !inRepo(path) {
					t.Errorf("%s:%d: link %q: %s is not in the repository", f, l.line, l.target, path)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !anchors(t, path)[anchor] {
				t.Errorf("%s:%d: link %q: %s has no heading with anchor #%s", f, l.line, l.target, path, anchor)
			}
		}
	}
	// A Markdown file named in code is a reference too: it must exist,
	// relative to the naming file or to the repository's root.
	for _, f := range files {
		forLines(t, f, func(n int, line string) {
			for _, m := range mdPathRE.FindAllStringSubmatch(line, -1) {
				if !inRepo(filepath.Join(filepath.Dir(f), m[1])) && !inRepo(filepath.Join("..", m[1])) {
					t.Errorf("%s:%d: %s is not in the repository", f, n, m[1])
				}
			}
		})
	}
	if checked < 20 {
		t.Fatalf("only %d relative links found: is the parser broken?", checked)
	}
}

// inRepo reports whether path (relative to docs/) exists inside the
// repository: a link that leaves it works only on the machine that wrote it.
func inRepo(path string) bool {
	root, err1 := filepath.Abs("..")
	abs, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil || (abs != root && !strings.HasPrefix(abs, root+string(filepath.Separator))) {
		return false
	}
	_, err := os.Stat(abs)
	return err == nil
}

type link struct {
	target string
	line   int
}

// links are a Markdown file's link targets outside code blocks and code
// spans.
func links(t *testing.T, path string) []link {
	t.Helper()
	var out []link
	forLines(t, path, func(n int, line string) {
		for _, m := range linkRE.FindAllStringSubmatch(inlineRE.ReplaceAllString(line, ""), -1) {
			out = append(out, link{m[1], n})
		}
	})
	return out
}

// anchors are the heading anchors of a Markdown file, as GitHub makes
// them: lower case, punctuation but '-' and '_' dropped, spaces as '-',
// repeats numbered -1, -2, ...
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	forLines(t, path, func(_ int, line string) {
		h := strings.TrimLeft(line, "#")
		if h == line || !strings.HasPrefix(h, " ") {
			return
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(h)) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				b.WriteRune(r)
			}
		}
		a := b.String()
		for i := 1; out[a]; i++ {
			a = b.String() + "-" + strconv.Itoa(i)
		}
		out[a] = true
	})
	return out
}

// forLines calls fn for each line outside fenced code blocks.
func forLines(t *testing.T, path string, fn func(n int, line string)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fenced := false
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if !fenced {
			fn(i+1, line)
		}
	}
}
