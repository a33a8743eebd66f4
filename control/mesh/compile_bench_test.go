package mesh

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkCompile compiles a mesh of one two-version service, a traffic
// rule and n sidecars (what a weight change costs the control plane).
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run(fmt.Sprintf("sidecars=%d", n), func(b *testing.B) {
			m := benchMesh(b, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := Compile(m, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchMesh(tb testing.TB, n int) *Mesh {
	tb.Helper()
	var s strings.Builder
	s.WriteString(`kind: Service
name: orders
spec:
  versions:
    - name: v1
      endpoints: [{address: "127.0.0.1:1001"}]
    - name: v2
      endpoints: [{address: "127.0.0.1:1002"}]
---
kind: TrafficRule
name: orders
spec:
  service: orders
  routes:
    - name: split
      split: [{version: v1, weight: 30}, {version: v2, weight: 70}]
`)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&s, "---\nkind: Sidecar\nname: s%03d\nspec:\n  outbound: 127.0.0.1:0\n", i)
	}
	rs, err := Decode("bench.yaml", []byte(s.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return New(rs)
}
