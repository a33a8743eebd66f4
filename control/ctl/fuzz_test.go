package ctl

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseWeights: the VERSION=WEIGHT list of `weft ctl set-weight`
// (which becomes the TrafficRule it applies) is accepted only as
// non-empty versions with weights 0..100 adding up to 100, and refused
// otherwise with an error.
func FuzzParseWeights(f *testing.F) {
	for _, s := range []string{"v1=0,v2=100", "v1=100,v2=0", "v1=60,v2=30", "v1=50,v3=50", "v1=90, v2=10",
		"", "=100", "v1", "v1=-5,v2=105", "v1=1e2", "v1=+100", "v1=100,", "a=33,b=33,c=34", "v1=0100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		splits, err := parseWeights(s)
		if (splits == nil) == (err == nil) {
			t.Fatalf("parseWeights(%q) = %v, %v", s, splits, err)
		}
		if err != nil {
			return
		}
		sum := 0
		for _, sp := range splits {
			if sp.Version == "" || sp.Weight < 0 || sp.Weight > 100 {
				t.Fatalf("parseWeights(%q) accepted %+v", s, sp)
			}
			sum += sp.Weight
		}
		if sum != 100 || len(splits) != strings.Count(s, ",")+1 {
			t.Fatalf("parseWeights(%q) = %+v", s, splits)
		}
		// The canonical form parses to the same splits.
		var parts []string
		for _, sp := range splits {
			parts = append(parts, sp.Version+"="+strconv.Itoa(sp.Weight))
		}
		again, err := parseWeights(strings.Join(parts, ","))
		if err != nil || len(again) != len(splits) {
			t.Fatalf("%q does not re-parse: %v", strings.Join(parts, ","), err)
		}
		for i := range again {
			if again[i] != splits[i] {
				t.Fatalf("%q re-parses as %+v", strings.Join(parts, ","), again)
			}
		}
	})
}
