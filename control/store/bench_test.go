package store

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weftmesh/weft/control/internal/etcdtest"
)

// BenchmarkApply is one weight change committed: on the file store (which
// fsyncs state.json), on one embedded etcd member with and without fsync,
// and on three members without: what the default store costs.
func BenchmarkApply(b *testing.B) {
	run := func(b *testing.B, o Options) {
		o.Compile = compile
		s, err := Open(o)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Apply(Change{Who: "b", Source: SourceAPI, Puts: res(b, web)}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.Apply(Change{Who: "b", Source: SourceAPI, Puts: split(b, i%100)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("file", func(b *testing.B) { run(b, Options{Dir: b.TempDir()}) })
	b.Run("etcd-1-member", func(b *testing.B) {
		c := etcdtest.Start(b, 1)
		run(b, Options{Backend: NewEtcdBackend(c.Client(), EtcdOptions{})})
	})
	b.Run("etcd-1-member-fsync", func(b *testing.B) {
		c := etcdtest.StartWith(b, 1, etcdtest.Options{Fsync: true})
		run(b, Options{Backend: NewEtcdBackend(c.Client(), EtcdOptions{})})
	})
	b.Run("etcd-3-members", func(b *testing.B) {
		c := etcdtest.Start(b, 3)
		run(b, Options{Backend: NewEtcdBackend(c.Client(), EtcdOptions{})})
	})
}

// BenchmarkApply100Sidecars is one weight change that every one of 100
// sidecars sees, on the file store: the control plane's whole cost of a
// change before the watches answer.
func BenchmarkApply100Sidecars(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir(), Compile: compile})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var y strings.Builder
	y.WriteString(web)
	for i := 2; i <= 100; i++ {
		fmt.Fprintf(&y, "---\nkind: Sidecar\nname: n%d\nspec: {outbound: \"127.0.0.1:0\"}\n", i)
	}
	if _, err := s.Apply(Change{Who: "b", Source: SourceAPI, Puts: res(b, y.String())}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Apply(Change{Who: "b", Source: SourceAPI, Puts: split(b, i%100)}); err != nil {
			b.Fatal(err)
		}
	}
}
