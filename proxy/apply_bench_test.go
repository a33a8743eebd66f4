package proxy

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/weftmesh/weft/proxy/config"
)

// weightChange is a sidecar's config as the control plane compiles it
// (testdata/mesh_sidecar.json: control/mesh's output for one sidecar of a
// two-version service split by a TrafficRule, as `weft bench control`
// runs it) at version v with the split's weights w/100-w.
func weightChange(tb testing.TB, v, w int) []byte {
	tb.Helper()
	raw, err := os.ReadFile("testdata/mesh_sidecar.json")
	if err != nil {
		tb.Fatal(err)
	}
	split := []byte(`"weight":30},{"cluster":"orders.default.v2","weight":70}`)
	if !bytes.Contains(raw, split) {
		tb.Fatal("testdata/mesh_sidecar.json: no 30/70 split to change")
	}
	raw = bytes.Replace(raw, split, []byte(`"weight":`+strconv.Itoa(w)+`},{"cluster":"orders.default.v2","weight":`+strconv.Itoa(100-w)+`}`), 1)
	return append([]byte(`{"version":"`+strconv.Itoa(v)+`",`), raw[1:]...)
}

// BenchmarkApplyWeightChange is what one sidecar spends on a weight change
// from the control plane: the config parsed and applied, two configs
// alternating so every round is a change. "after" parses as control/client
// does, decoding only what differs from the config before
// (config.DeltaParser); "whole" decodes the whole config each time
// (config.ParseJSON), for comparison. "apply" is proxy.Apply alone.
func BenchmarkApplyWeightChange(b *testing.B) {
	ctx := context.Background()
	newProxy := func(b *testing.B) *Proxy {
		p, err := New(ctx, Options{Logger: zap.NewNop(), DrainTimeout: time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_ = p.Shutdown(sctx)
		})
		return p
	}
	raws := [2][]byte{weightChange(b, 1, 30), weightChange(b, 2, 70)}
	parsers := []struct {
		name  string
		parse func() func([]byte) (*config.Config, error)
	}{
		{"whole", func() func([]byte) (*config.Config, error) {
			return func(raw []byte) (*config.Config, error) { return config.ParseJSON("bench", raw) }
		}},
		{"after", func() func([]byte) (*config.Config, error) {
			var d config.DeltaParser
			return func(raw []byte) (*config.Config, error) { return d.Parse("bench", raw) }
		}},
	}
	for _, ps := range parsers {
		b.Run("parse/"+ps.name, func(b *testing.B) {
			parse := ps.parse()
			if _, err := parse(raws[1]); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := parse(raws[i%2]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("apply", func(b *testing.B) {
		p := newProxy(b)
		var cfgs [2]*config.Config
		for i, raw := range raws {
			cfg, err := config.ParseJSON("bench", raw)
			if err != nil {
				b.Fatal(err)
			}
			cfgs[i] = cfg
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := p.Apply(ctx, cfgs[i%2], raws[i%2], ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, ps := range parsers {
		b.Run("parse+apply/"+ps.name, func(b *testing.B) {
			p := newProxy(b)
			parse := ps.parse()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				cfg, err := parse(raws[i%2])
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Apply(ctx, cfg, raws[i%2], ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
