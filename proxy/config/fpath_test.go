package config

import (
	"strconv"
	"testing"
)

func TestFieldPathText(t *testing.T) {
	p := rootAt("listeners", 0).at(".virtual_hosts", 12).f(".name")
	if got := p.String(); got != "listeners[0].virtual_hosts[12].name" {
		t.Fatalf("got %q", got)
	}
	// Deeper than fpathSegs: the parts so far are folded into one.
	q := field("a")
	want := "a"
	for i := 0; i < 3*fpathSegs; i++ {
		q = q.at(".b", i)
		want += ".b[" + strconv.Itoa(i) + "]"
	}
	if got := q.String(); got != want {
		t.Fatalf("deep path: got %q, want %q", got, want)
	}
}

// TestUniqueBeyondInlineNames: a duplicate is found, and names its first
// use, past the names kept inline.
func TestUniqueBeyondInlineNames(t *testing.T) {
	v := &validator{}
	var seen names
	for i := 0; i < 10; i++ {
		v.unique(&seen, rootAt("clusters", i).f(".name"), "cluster name", strconv.Itoa(i))
	}
	v.unique(&seen, rootAt("clusters", 10).f(".name"), "cluster name", strconv.Itoa(7))
	v.unique(&seen, rootAt("clusters", 11).f(".name"), "cluster name", strconv.Itoa(2))
	if len(v.errs) != 2 ||
		v.errs[0].Error() != `clusters[10].name: duplicate cluster name "7": clusters[7].name already uses it` ||
		v.errs[1].Error() != `clusters[11].name: duplicate cluster name "2": clusters[2].name already uses it` {
		t.Fatalf("errors: %v", v.errs)
	}
}
