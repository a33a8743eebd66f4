package abi

import (
	"reflect"
	"testing"
)

func TestPairsRoundTrip(t *testing.T) {
	in := [][2]string{{":method", "GET"}, {"x-empty", ""}, {"k", "v with spaces"}}
	out, ok := ParsePairs(nil, AppendPairs(nil, in))
	if !ok || !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip = %v, %v", out, ok)
	}
	if out, ok := ParsePairs(nil, nil); !ok || len(out) != 0 {
		t.Fatalf("empty map = %v, %v", out, ok)
	}
	for _, bad := range [][]byte{{1, 0}, {1, 0, 0, 0}, {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 'a', 'b', 'c', 0}} {
		if _, ok := ParsePairs(nil, bad); ok {
			t.Errorf("ParsePairs(%v) accepted malformed input", bad)
		}
	}
}

func FuzzParsePairs(f *testing.F) {
	f.Add(AppendPairs(nil, [][2]string{{"a", "b"}, {"", ""}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		pairs, ok := ParsePairs(nil, b)
		if !ok {
			return
		}
		again, ok := ParsePairs(nil, AppendPairs(nil, pairs))
		if !ok || len(again) != len(pairs) {
			t.Fatalf("re-encoding %v failed", pairs)
		}
		for i := range pairs {
			if pairs[i] != again[i] {
				t.Fatalf("pair %d: %v != %v", i, pairs[i], again[i])
			}
		}
	})
}
