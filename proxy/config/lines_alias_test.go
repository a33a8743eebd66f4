package config

import (
	"strings"
	"testing"
)

// TestPathThroughAliasOfTooDeepAnchor: the walk that indexes fields stops
// 101 levels deep, so the fields of an anchored mapping deeper than that
// are not indexed where they stand; an alias that brings the mapping in
// higher up indexes them there, under the alias's path (walk follows an
// alias it is given, once).
func TestPathThroughAliasOfTooDeepAnchor(t *testing.T) {
	const levels = 101
	var b strings.Builder
	for i := 0; i < levels; i++ {
		b.WriteString(strings.Repeat(" ", i) + "k:\n") // lines 1-101
	}
	b.WriteString(strings.Repeat(" ", levels) + "deep: &d\n") // line 102
	b.WriteString(strings.Repeat(" ", levels+1) + "f: 1\n")   // line 103: 103 levels down
	b.WriteString("top: *d\n")                                // line 104
	b.WriteString("list:\n  - *d\n")                          // lines 105-106
	ix := newLineIndex([]byte(b.String()))
	if got, want := ix.pathAt(103, "f", 0, ""), "top.f"; got != want {
		t.Errorf("the field under the deep anchor: path %q, want %q (through the first alias)", got, want)
	}
	if got, want := ix.pathAt(104, "top", 0, ""), "top"; got != want {
		t.Errorf("the alias's own line: path %q, want %q", got, want)
	}
}
