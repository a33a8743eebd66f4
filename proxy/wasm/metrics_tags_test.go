package wasm

import (
	"reflect"
	"regexp"
	"testing"
)

// TestSplitTags pins the tag extraction: Envoy's rules (first group cut,
// second group the value) and, without rules, NAME_KEY=VALUE.
func TestSplitTags(t *testing.T) {
	rules := []StatsTag{
		{Name: "value", Regex: regexp.MustCompile(`(_value=([a-zA-Z]+))`)},
		{Name: "reporter", Regex: regexp.MustCompile(`(_reporter=([a-zA-Z]+))`)},
	}
	cases := []struct {
		name       string
		rules      []StatsTag
		base       string
		keys, vals []string
		wantTagged bool
	}{
		{"custom_header_value_counts_value=foo_reporter=wasmgosdk", rules, "custom_header_value_counts", []string{"value", "reporter"}, []string{"foo", "wasmgosdk"}, true},
		{"custom_header_value_counts_value=foo_reporter=wasmgosdk", nil, "custom_header_value_counts", []string{"value", "reporter"}, []string{"foo", "wasmgosdk"}, true},
		{"plain_requests", nil, "plain_requests", nil, nil, false},
		{"plain_requests", rules, "plain_requests", nil, nil, false},
		{"only_reporter=x", rules, "only", []string{"reporter"}, []string{"x"}, true},
		{"_k=v", nil, "", []string{"k"}, []string{"v"}, false}, // nothing left to name it
	}
	for _, c := range cases {
		base, keys, vals, ok := splitTags(c.name, c.rules)
		if base != c.base || !reflect.DeepEqual(keys, c.keys) || !reflect.DeepEqual(vals, c.vals) || ok != c.wantTagged {
			t.Errorf("splitTags(%q, %d rules) = %q %v %v %t", c.name, len(c.rules), base, keys, vals, ok)
		}
	}
}
