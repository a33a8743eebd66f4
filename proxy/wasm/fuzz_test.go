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

	// proxy_call_foreign_function: guest memory holds a foreign function
	// name at fuzzNameAt and valid weft.verify_signature arguments at
	// fuzzArgsAt (written before every call), so seeds reach the function
	// and mutations of the pointers and lengths around them.
	foreignArgs := fuzzForeignArgs(f)
	for i, fn := range funcs {
		if fn.name != "proxy_call_foreign_function" {
			continue
		}
		le := func(xs ...uint32) []byte {
			var b []byte
			for _, x := range xs {
				b = binary.LittleEndian.AppendUint32(b, x)
			}
			return b
		}
		n := uint32(len(foreignVerifySignature))
		a := uint32(len(foreignArgs))
		f.Add(uint8(i), le(fuzzNameAt, n, fuzzArgsAt, a, retPtr, retLen))
		f.Add(uint8(i), le(fuzzNameAt, n, fuzzArgsAt, a-1, retPtr, retLen))
		f.Add(uint8(i), le(fuzzNameAt, n, fuzzArgsAt+1, a, retPtr, retLen))
		f.Add(uint8(i), le(fuzzNameAt, n-1, fuzzArgsAt, a, retPtr, retLen))
		f.Add(uint8(i), le(fuzzNameAt, n, fuzzArgsAt, a, 0xfffffff0, retLen))
	}

	rt := newRuntime(f)
	p := load(f, rt, PluginSpec{Module: wat(f, "headers"), VMConfig: []byte("vm"), PluginConfig: []byte("plugin")}, Env{})
	var stack [16]uint64
	var pristine []byte // guest memory below the heap, as instantiated

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
			if pristine == nil {
				pristine, _ = v.mem.Read(0, pristineBytes)
				pristine = append([]byte(nil), pristine...)
			}
			v.mem.Write(fuzzNameAt, []byte(foreignVerifySignature))
			v.mem.Write(fuzzArgsAt, foreignArgs)
			v.cur = f
			fn.fn(v.ctx, v.mod, stack[:])
			v.cur = nil
			// The module's static data back as instantiated: the host may
			// legally have written over it (a return pointer anywhere),
			// which would break the after-check for reasons of its own.
			v.mem.Write(0, pristine)
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

// Where FuzzHostCalls keeps a foreign function's name and arguments in
// guest memory (inside the WAT modules' free area, below retPtr).
const (
	pristineBytes = 65536 // the WAT modules' heaps start here
	fuzzNameAt    = 30000
	fuzzArgsAt    = 30064
)

// fuzzForeignArgs are valid weft.verify_signature arguments (HS256: small
// enough to fit below retPtr).
func fuzzForeignArgs(t testing.TB) []byte {
	k := testVerifyKeys(t)
	input := []byte("eyJhbGciOiJIUzI1NiJ9.e30")
	return verifyArgs(keyFormatJWK, "HS256", jwkOf(t, k.secret, "HS256"), input, jwsSign(t, "HS256", k.secret, input))
}
