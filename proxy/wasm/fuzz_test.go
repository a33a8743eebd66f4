package wasm

import (
	"bytes"
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
			fn.fn(&v.ctx, v.mod, stack[:])
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

// fuzzPairs splits b into key/value pairs at '\n' (a trailing odd field is
// a key with an empty value), so mutations reach empty keys, NULs and
// arbitrary bytes in both.
func fuzzPairs(b []byte) [][2][]byte {
	if len(b) == 0 {
		return nil
	}
	fields := bytes.Split(b, []byte("\n"))
	var pairs [][2][]byte
	for i := 0; i < len(fields); i += 2 {
		kv := [2][]byte{fields[i], nil}
		if i+1 < len(fields) {
			kv[1] = fields[i+1]
		}
		pairs = append(pairs, kv)
	}
	return pairs
}

// within reports whether s is empty or a view of b's bytes (not a copy,
// and not past len(b)).
func within(s, b []byte) bool {
	if len(s) == 0 {
		return true
	}
	off := cap(b) - cap(s)
	return off >= 0 && off+len(s) <= len(b) && &b[off] == &s[0]
}

// FuzzParseMap: the Proxy-Wasm map decoder the host applies to guest
// bytes. parse(serialize(pairs)) gives the pairs back, any strict
// truncation of a non-empty serialization is refused, and arbitrary bytes
// decode (or not) without panicking into views that lie inside the input
// and re-encode to the same pairs.
func FuzzParseMap(f *testing.F) {
	f.Add([]byte{}, []byte(":method\nGET\n:path\n/\nx-in\nfuzz"))
	f.Add(serializeMap(nil, [][2][]byte{{[]byte(":status"), []byte("200")}, {[]byte("x-a"), []byte("b")}}), []byte("k\nv"))
	f.Add(serializeMap(nil, [][2][]byte{{[]byte("x-reason"), []byte("test")}}), []byte("\n\n\n"))
	f.Add(serializeMap(nil, [][2][]byte{{nil, nil}, {[]byte("a\x00b"), []byte("\x00")}}), []byte("a\x00b\n\x00\xff"))
	f.Add([]byte{1, 0, 0, 0}, []byte("x"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 1, 0, 0, 0, 'k', 0, 'v', 0}, []byte(""))
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0}, []byte(""))
	f.Add([]byte{2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'k', 0, 'v', 0}, []byte(""))
	f.Fuzz(func(t *testing.T, raw, kv []byte) {
		// Arbitrary bytes.
		prefix := [][2][]byte{{[]byte("kept"), []byte("kept")}}
		got, ok := parseMap(prefix, raw)
		if len(got) < 1 || string(got[0][0]) != "kept" {
			t.Fatalf("parseMap dropped what dst held: %q", got)
		}
		// Even on failure, the pairs appended before the bad one (which the
		// callers discard) must be in bounds.
		total := 0
		for _, p := range got[1:] {
			if !within(p[0], raw) || !within(p[1], raw) {
				t.Fatalf("pair %q=%q points outside the %d-byte input", p[0], p[1], len(raw))
			}
			total += len(p[0]) + len(p[1]) + 2 + 8
		}
		if ok && len(raw) > 0 && 4+total > len(raw) {
			t.Fatalf("decoded %d bytes of pairs from a %d-byte input", 4+total, len(raw))
		}
		if ok {
			again, ok2 := parseMap(nil, serializeMap(nil, got[1:]))
			if !ok2 || !equalPairs(again, got[1:]) {
				t.Fatalf("re-encoding changed the map: %q -> %q (%v)", got[1:], again, ok2)
			}
		}

		// Round trip of a map built from fuzzed pairs.
		pairs := fuzzPairs(kv)
		ser := serializeMap(nil, pairs)
		back, ok := parseMap(nil, ser)
		if !ok || !equalPairs(back, pairs) {
			t.Fatalf("parse(serialize(%q)) = %q, %v", pairs, back, ok)
		}
		if len(pairs) > 0 {
			for _, cut := range []int{1, len(ser) / 2, len(ser) - 1} {
				if cut <= 0 || cut >= len(ser) {
					continue
				}
				if p, ok := parseMap(nil, ser[:cut]); ok {
					t.Fatalf("a %d-byte truncation of a %d-byte map parsed: %q", cut, len(ser), p)
				}
			}
		}
	})
}

func equalPairs(a, b [][2][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i][0], b[i][0]) || !bytes.Equal(a[i][1], b[i][1]) {
			return false
		}
	}
	return true
}
