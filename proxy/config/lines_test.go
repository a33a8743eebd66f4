package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestSplitPath(t *testing.T) {
	for path, want := range map[string][]pathSeg{
		"":                {},
		"a":               {{key: "a"}},
		".a":              {{key: "a"}},
		"a[0].b.c[12]":    {{key: "a"}, {index: 0}, {key: "b"}, {key: "c"}, {index: 12}},
		"a[x].b":          {{key: "a"}, {key: "[x]"}, {key: "b"}},
		"a[-1]":           {{key: "a"}, {key: "[-1]"}},
		"a[3":             {{key: "a"}, {key: "[3"}},
		"routes[1][2].id": {{key: "routes"}, {index: 1}, {index: 2}, {key: "id"}},
	} {
		got := splitPath(path)
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("splitPath(%q) = %+v, want %+v", path, got, want)
		}
	}
}

// TestLineThroughMerges: a path is followed through "<<" merges of one
// mapping or a list of them, up to 10 merges deep (a bound against
// pathological documents), and an index past a list's end stops at the
// list.
func TestLineThroughMerges(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 {k: 1}\n") // line 1
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d {<<: *a%d}\n", i, i, i-1) // lines 2-11
	}
	b.WriteString("m10: {<<: *a9}\n")       // line 12: k is 10 merges away
	b.WriteString("m11: {<<: *a10}\n")      // line 13: k is 11 merges away
	b.WriteString("x: &x {p: 1}\n")         // line 14
	b.WriteString("y: &y {q: 2}\n")         // line 15
	b.WriteString("both: {<<: [*x, *y]}\n") // line 16
	b.WriteString("list: [one]\n")          // line 17
	b.WriteString("s0: &s0 {k: 1}\n")       // line 18
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "s%d: &s%d {<<: [*s%d]}\n", i, i, i-1) // lines 19-28: merges of lists
	}
	b.WriteString("n10: {<<: [*s9]}\n")  // line 29
	b.WriteString("n11: {<<: [*s10]}\n") // line 30
	ix := newLineIndex([]byte(b.String()))
	for path, want := range map[string]int{
		"m10.k":   1,
		"m11.k":   13, // too deep: where the field would go
		"both.p":  14,
		"both.q":  15,
		"both.r":  16,
		"list[0]": 17,
		"list[1]": 17,
		"list[9]": 17,
		"n10.k":   18,
		"n11.k":   30, // too deep through lists too
	} {
		if got := ix.line(path); got != want {
			t.Errorf("line(%q) = %d, want %d", path, got, want)
		}
	}
}

// pathAtDoc puts several fields on some lines (flow style), so that the
// field a decode error means must be picked among them.
const pathAtDoc = `listeners:
  - name: a
    address: 0.0.0.0:1
    virtual_hosts:
      - name: v
        domains: ["x", 5]
        routes: {match: {prefix: /}, cluster: c}
deep: {a: 1, c: {d: {e: {}}}}
`

// TestPathAtPicksTheField: a decode error names a line, and sometimes a
// field name, a YAML kind or the start of a value; pathAt turns that into
// the path of the field meant.
func TestPathAtPicksTheField(t *testing.T) {
	const vh = "listeners[0].virtual_hosts"
	for _, tc := range []struct {
		line  int
		field string
		kind  yaml.Kind
		value string
		want  string
	}{
		// A named field is the one whose key is on the line, even when a
		// deeper field is there too.
		{7, "cluster", 0, "", vh + "[0].routes.cluster"},
		{7, "prefix", 0, "", vh + "[0].routes.match.prefix"},
		// A key on an earlier line does not count: virtual_hosts' key is
		// on line 4, its value starts on line 5.
		{5, "virtual_hosts", 0, "", vh + "[0].name"},
		// Otherwise the deepest field whose value starts on the line...
		{2, "", 0, "", "listeners[0].name"},
		{7, "", 0, "", vh + "[0].routes.match.prefix"},
		// ... of the kind named, the first of equal depth...
		{5, "", yaml.SequenceNode, "", vh},
		{6, "", yaml.SequenceNode, "", vh + "[0].domains"},
		{6, "", yaml.ScalarNode, "", vh + "[0].domains[0]"},
		// ... with the value named (cut to its first bytes, as yaml.v3
		// does)...
		{7, "", yaml.ScalarNode, "c", vh + "[0].routes.cluster"},
		{3, "", yaml.ScalarNode, "0.0.0...", "listeners[0].address"},
		// ... else of the kind alone, else of any kind.
		{8, "", yaml.ScalarNode, "zzz", "deep.a"},
		{8, "", yaml.SequenceNode, "", "deep.c.d.e"},
		{6, "", yaml.MappingNode, "", vh + "[0].domains[0]"},
		// A line where only a key sits: that key's field.
		{4, "", 0, "", vh},
		{4, "", yaml.ScalarNode, "x", vh},
		// A line with no field.
		{99, "", 0, "", ""},
		{99, "name", 0, "", ""},
	} {
		ix := newLineIndex([]byte(pathAtDoc))
		if got := ix.pathAt(tc.line, tc.field, tc.kind, tc.value); got != tc.want {
			t.Errorf("pathAt(%d, %q, %v, %q) = %q, want %q", tc.line, tc.field, tc.kind, tc.value, got, tc.want)
		}
	}
	var none *lineIndex
	if none.pathAt(1, "x", 0, "") != "" || newLineIndex(nil).pathAt(1, "", 0, "") != "" || none.line("a") != 0 {
		t.Error("an index without a source names a path or a line")
	}
}

// TestPathAtDeepNesting: fields are indexed 101 levels deep and no
// deeper (a bound against pathological documents).
func TestPathAtDeepNesting(t *testing.T) {
	const levels = 101
	var b strings.Builder
	var path []string
	for i := 0; i < levels; i++ {
		b.WriteString(strings.Repeat(" ", i) + "k:")
		if i == levels-1 {
			b.WriteString(" 1")
		}
		b.WriteString("\n")
		path = append(path, "k")
	}
	ix := newLineIndex([]byte(b.String()))
	if got, want := ix.pathAt(levels, "k", 0, ""), strings.Join(path, "."); got != want {
		t.Errorf("level %d: path %q, want %q", levels, got, want)
	}
	b.WriteString(strings.Repeat(" ", levels) + "deeper: 2\n")
	doc := strings.Replace(b.String(), "k: 1\n", "k:\n", 1)
	ix = newLineIndex([]byte(doc))
	if got, want := ix.pathAt(levels+1, "deeper", 0, ""), strings.Join(path, "."); got != want {
		t.Errorf("level %d: path %q, want the deepest indexed field %q", levels+1, got, want)
	}
}

// TestMergeErrorsDropsWhatADecodeErrorExplains: a field that failed to
// decode holds its zero value, so validation's complaints about it (or
// about fields under it) are left out; others stay, sorted by line.
func TestMergeErrorsDropsWhatADecodeErrorExplains(t *testing.T) {
	decode := Errors{
		{File: "f", Line: 5, Path: "clusters[0].lb", Reason: "wrong type"},
		{File: "f", Line: 9, Reason: "no path"},
	}
	verrs := Errors{
		{File: "f", Line: 5, Path: "clusters[0].lb", Reason: "unknown value"},
		{File: "f", Line: 6, Path: "clusters[0].lb.x", Reason: "under it"},
		{File: "f", Line: 7, Path: "clusters[0].lb[1]", Reason: "under it"},
		{File: "f", Line: 2, Path: "clusters[0].lb_policy", Reason: "a sibling"},
		{File: "f", Line: 3, Path: "clusters[0]", Reason: "the parent"},
		{File: "f", Line: 9, Path: "listeners[0].name", Reason: "elsewhere"},
	}
	var got []string
	for _, e := range mergeErrors(decode, verrs).(Errors) {
		got = append(got, fmt.Sprintf("%d %s %s", e.Line, e.Path, e.Reason))
	}
	want := []string{"2 clusters[0].lb_policy a sibling", "3 clusters[0] the parent", "5 clusters[0].lb wrong type",
		"9  no path", "9 listeners[0].name elsewhere"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
