package store

import (
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
