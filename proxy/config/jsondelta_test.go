package config

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// deltaCorpus is JSON configs to parse one after another: the full example
// config, a mesh sidecar's config as the control plane compiles it, and
// variations of each.
func deltaCorpus(tb testing.TB) [][]byte {
	tb.Helper()
	full, err := Load("testdata/full.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	fullJSON, err := json.Marshal(full)
	if err != nil {
		tb.Fatal(err)
	}
	mesh, err := os.ReadFile("../testdata/mesh_sidecar.json")
	if err != nil {
		tb.Fatal(err)
	}
	mesh = bytes.TrimSpace(mesh)
	split := `"weight":30},{"cluster":"orders.default.v2","weight":70}`
	if !bytes.Contains(mesh, []byte(split)) {
		tb.Fatal("../testdata/mesh_sidecar.json: no 30/70 split")
	}
	swap := func(b []byte, old, new string) []byte {
		tb.Helper()
		if !bytes.Contains(b, []byte(old)) {
			tb.Fatalf("corpus: %q not found", old)
		}
		return bytes.Replace(b, []byte(old), []byte(new), 1)
	}
	return [][]byte{
		fullJSON,
		mesh,
		swap(mesh, split, `"weight":70},{"cluster":"orders.default.v2","weight":30}`),
		swap(mesh, `"127.0.0.1:1001"`, `"127.0.0.1:1003"`), // a cluster's endpoint
		swap(mesh, `{"node":`, `{"version":"7","node":`),
		swap(mesh, `"id":"s000"`, `"id":"s001"`),                                      // tracing's default service name follows
		swap(mesh, `"max_connections":10000`, `"max_connections":100`),                // a listener's own field
		swap(mesh, `"domains":["orders",`, `"domains":["orders.example",`),            // a virtual host's own field
		swap(mesh, `"name":"orders.default/split"`, `"name":"orders.default/other"`),  // a route
		swap(mesh, `"timeout":"15s"`, `"timeout":"10s"`),                              // a route action's own field
		swap(mesh, `"timeout":"15s",`, ``),                                            // ... back to its default
		swap(mesh, `"status":404`, `"status":403`),                                    // a route's own field
		swap(mesh, `"weighted_clusters":[`, `"weighted_clusters":[],"x":[`),           // unknown field in an action
		swap(mesh, `"weight":30}`, `"weight":30,"bogus":1}`),                          // unknown field in a changed host
		swap(mesh, `"weight":30}`, `"weight":"30"}`),                                  // wrong type
		swap(mesh, split, `"weight":60},{"cluster":"orders.default.v2","weight":30}`), // invalid: adds to 90
		swap(mesh, `"listeners":`, `"Listeners":`),                                    // encoding/json matches it anyway
		swap(mesh, `"clusters":[`, `"clusters":null,"clusters":[`),
		swap(mesh, `"virtual_hosts":`, `"virtual_hosts":[],"virtual_hosts":`),
		swap(mesh, `"clusters":[`, `"cl\u0075sters":[`),
		append(append([]byte(nil), mesh...), []byte(` {}`)...),
		mesh[:len(mesh)-1],
		swap(mesh, `"listeners":[`, `"listeners":[{"name":"x","address":"127.0.0.1:0"},`),
		[]byte(`{}`),
		[]byte(`{"listeners":[]}`),
		[]byte(`[]`),
		[]byte(``),
	}
}

// TestDeltaParserIsParseJSON parses every corpus config after every other
// (and after a refused one): the result (or the error) is ParseJSON's, and
// the config before is left as it was.
func TestDeltaParserIsParseJSON(t *testing.T) {
	corpus := deltaCorpus(t)
	reused := 0
	for i, prevData := range corpus {
		for j, data := range corpus {
			var d DeltaParser
			prev, err := d.Parse("prev", prevData)
			if err != nil {
				continue
			}
			prevCopy, _ := ParseJSON("prev", prevData)
			for k := 0; k < 2; k++ { // again after itself: all reused
				got, gotErr := d.Parse("next", data)
				want, wantErr := ParseJSON("next", data)
				if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
					t.Fatalf("corpus %d after %d (round %d): error %v, ParseJSON says %v", j, i, k, gotErr, wantErr)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("corpus %d after %d (round %d): config differs from ParseJSON's", j, i, k)
				}
				if k == 0 && !reflect.DeepEqual(prev, prevCopy) {
					t.Fatalf("corpus %d after %d: the config before was modified", j, i)
				}
				if k == 0 && got != nil && len(got.Clusters) > 0 && len(prev.Clusters) > 0 && &got.Clusters[0].Endpoints[0] == &prev.Clusters[0].Endpoints[0] {
					reused++
				}
			}
		}
	}
	// The weight changes reuse the clusters (a check that the fast path
	// runs at all, not only the fallback).
	if reused == 0 {
		t.Fatal("no parse reused a decoded cluster")
	}
}

// FuzzDeltaParser checks that parsing data after prevData gives what
// ParseJSON gives, for any pair.
func FuzzDeltaParser(f *testing.F) {
	corpus := deltaCorpus(f)
	for _, a := range corpus[1:5] {
		for _, b := range corpus {
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, prevData, data []byte) {
		var d DeltaParser
		if _, err := d.Parse("prev", prevData); err != nil {
			return
		}
		got, gotErr := d.Parse("next", data)
		want, wantErr := ParseJSON("next", data)
		if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
			t.Fatalf("error %v, ParseJSON says %v", gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("config differs from ParseJSON's")
		}
	})
}

func TestSplitObjectRefusesWhatIsNotPlain(t *testing.T) {
	for _, s := range []string{`{"a":1,}`, `{"a" 1}`, `{"a":1} x`, `{"a":"x`, `{"a":[1,}`, `{"a":1,"b"}`, `[1]`, ``} {
		if _, ok := splitObject([]byte(s)); ok {
			t.Errorf("splitObject(%q) accepted", s)
		}
	}
	m, ok := splitObject([]byte(` { "a" : {"x":"}\""} , "b":[1, 2] ,"c":true } `))
	if !ok || len(m) != 3 || string(m[0].val) != `{"x":"}\""}` || string(m[1].val) != `[1, 2]` || string(m[2].val) != "true" {
		t.Fatalf("splitObject: %q %v", m, ok)
	}
	if !strings.Contains(string(joinObject(m)), `"b":[1, 2]`) {
		t.Fatal("joinObject lost a member")
	}
}
