package config

import (
	"errors"
	"strings"
	"testing"
)

// syntaxError parses prefixes of the file, line by line, to place a
// syntax error, and stops once the prefixes it parsed add up to more than
// maxSyntaxSearchBytes: up to exactly that many it still places the error
// on its line; one byte more and the error keeps the line yaml.v3 gave
// (the start of the enclosing block, counted from 0). A long comment line pads the
// prefixes to the byte.
func TestSyntaxErrorSearchBudgetIsExact(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("parses about 12 MiB of YAML: well under a second, but 30 s under the race detector")
	}
	const head, bad = "listeners:\n", "  address: x\n"
	for _, tc := range []struct {
		name  string
		extra int // bytes past the budget
		line  int
	}{
		{"exactly the budget", 0, 3},
		{"one byte over", 1, 1}, // yaml.v3's line: where the block starts, counted from 0
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The prefixes parsed: line 1, lines 1-2, lines 1-3; the
			// extra bytes go on the last line, which only the third
			// prefix holds.
			fixed := 3*len(head) + 2*len("  - name: a #\n") + len(bad)
			pad := maxSyntaxSearchBytes - fixed
			if pad%2 != 0 {
				t.Fatalf("pad %d is odd: adjust the lines", pad)
			}
			second := "  - name: a #" + strings.Repeat("x", pad/2) + "\n"
			last := bad
			if tc.extra > 0 {
				last = "  address: x" + strings.Repeat(" ", tc.extra) + "\n"
			}
			doc := head + second + last
			if sum := 3*len(head) + 2*len(second) + len(last); sum != maxSyntaxSearchBytes+tc.extra {
				t.Fatalf("the prefixes add up to %d, want %d", sum, maxSyntaxSearchBytes+tc.extra)
			}
			_, err := Parse("f", []byte(doc))
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("Parse: %v, want one syntax error", err)
			}
			if fe := errs[0]; fe.Line != tc.line || !strings.Contains(fe.Reason, "did not find expected '-' indicator") {
				t.Fatalf("syntax error at line %d (%q), want line %d", fe.Line, fe.Reason, tc.line)
			}
		})
	}
}
