package wasm

import (
	"encoding/binary"
	"testing"

	"github.com/weftmesh/weft/proxy/filter"
)

// allABIFuncs lists the env host functions the way registerABI does.
func allABIFuncs() []abiFunc {
	var all []abiFunc
	for _, g := range [][]abiFunc{logFuncs(), propertyFuncs(), headerFuncs(), bufferFuncs(), streamFuncs(),
		httpCallFuncs(), sharedFuncs(), metricFuncs(), grpcFuncs()} {
		all = append(all, g...)
	}
	return all
}

// FuzzHostCalls drives every host function with arbitrary pointers,
// lengths and enum values against an instantiated module, from inside a
// stream context: nothing may panic, and the plugin must keep working.
func FuzzHostCalls(f *testing.F) {
	funcs := allABIFuncs()
	f.Add(uint8(0), []byte{2, 0, 0, 0, 0, 4, 0, 0, 10, 0, 0, 0})
	f.Add(uint8(5), []byte{0xf0, 0xff, 0xff, 0xff, 10, 0, 0, 0, 0, 8, 0, 0, 4, 8, 0, 0})
	f.Add(uint8(7), []byte{0, 0, 0, 0, 0, 8, 0, 0, 4, 8, 0, 0})
	f.Add(uint8(9), []byte{0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0, 0, 0, 8, 0, 0, 4, 8, 0, 0})
	f.Add(uint8(14), []byte{7, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 0, 8, 0, 0, 4, 8, 0, 0})
	f.Add(uint8(20), []byte{200, 0, 0, 0})
	f.Add(uint8(255), []byte{})

	rt := newRuntime(f)
	p := load(f, rt, PluginSpec{Module: wat(f, "headers"), VMConfig: []byte("vm"), PluginConfig: []byte("plugin")}, Env{})
	var stack [16]uint64

	f.Fuzz(func(t *testing.T, which uint8, args []byte) {
		fn := funcs[int(which)%len(funcs)]
		s := newStream("/fuzz", "X-In", "fuzz")
		sf := p.NewStreamFilter(s)
		if sf == nil {
			t.Fatal("no stream filter")
		}
		phase := which & 1 // try both request and response phases
		func() {
			f := sf.(*streamFilter)
			v := f.v
			if v == nil {
				return
			}
			v.mu.Lock()
			defer v.mu.Unlock()
			if v.broken {
				return
			}
			f.phase = phase
			for i := range stack {
				stack[i] = 0
				if len(args) >= (i+1)*4 {
					stack[i] = uint64(binary.LittleEndian.Uint32(args[i*4:]))
				}
			}
			v.cur = f
			fn.fn(v.ctx, v.mod, stack[:])
			v.cur = nil
		}()
		sf.OnDone(s)

		// The plugin still serves a normal stream.
		s2 := newStream("/after", "X-In", "ok")
		o := runStream(p, s2)
		if o.req != filter.Continue || string(s2.Request.Header.Peek("X-Echo")) != "ok" {
			t.Fatalf("after %s%v: outcome %+v x-echo %q", fn.name, stack[:len(fn.params)], o, s2.Request.Header.Peek("X-Echo"))
		}
	})
}
