package wasm

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// editArgs encodes weft.edit_headers' arguments: ops as (op, name, value).
func editArgs(mt uint32, ops ...[3]string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, mt)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ops)))
	for _, o := range ops {
		b = append(b, o[0][0]-'0')
		for _, f := range o[1:] {
			b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
	}
	return b
}

// TestForeignEditHeaders: the writes of one call land in order, as the
// single calls would; malformed arguments write nothing; a refused write
// stops the rest and keeps the earlier ones.
func TestForeignEditHeaders(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers")}, Env{})
	s := newStream("/", "X-A", "0", "X-B", "gone", "Authorization", "Bearer x")
	h := newHostEnv(t, p, s)
	st, res := h.callForeign(foreignEditHeaders, editArgs(mapRequestHeaders,
		[3]string{"1", "authorization", ""}, [3]string{"0", "x-a", "1"}, [3]string{"2", "x-c", "2"}, [3]string{"2", "x-c", "3"}, [3]string{"1", "x-b", ""}))
	if st != statusOK || len(res) != 0 {
		t.Fatalf("status %d result %v", st, res)
	}
	rh := &s.Request.Header
	if string(rh.Peek("x-a")) != "1" || rh.Peek("x-b") != nil || rh.Peek("authorization") != nil {
		t.Errorf("headers after the edits:\n%s", rh.Header())
	}
	var cs []string
	for _, v := range rh.PeekAll("x-c") {
		cs = append(cs, string(v))
	}
	if len(cs) != 2 || cs[0] != "2" || cs[1] != "3" {
		t.Errorf("x-c = %q, want [2 3]", cs)
	}
	before := bytes.Clone(rh.Header())
	for name, args := range map[string][]byte{
		"empty":           nil,
		"truncated":       editArgs(mapRequestHeaders, [3]string{"0", "x-d", "1"})[:15],
		"trailing":        append(editArgs(mapRequestHeaders, [3]string{"0", "x-d", "1"}), 0),
		"unknown op":      editArgs(mapRequestHeaders, [3]string{"0", "x-d", "1"}, [3]string{"3", "x-e", "1"}),
		"remove a value":  editArgs(mapRequestHeaders, [3]string{"0", "x-d", "1"}, [3]string{"1", "x-a", "1"}),
		"too many writes": binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, mapRequestHeaders), maxHeaderEdits+1),
	} {
		if st, _ := h.callForeign(foreignEditHeaders, args); st != statusBadArgument {
			t.Errorf("%s: status %d, want BadArgument", name, st)
		}
		if !bytes.Equal(rh.Header(), before) {
			t.Fatalf("%s: headers changed:\n%s", name, rh.Header())
		}
	}
	if st, _ := h.callForeign(foreignEditHeaders, editArgs(99, [3]string{"0", "x-d", "1"})); st != statusNotFound {
		t.Errorf("unknown map: status %d, want NotFound", st)
	}
	// A value with a line break is refused; the write before it stays.
	st, _ = h.callForeign(foreignEditHeaders, editArgs(mapRequestHeaders,
		[3]string{"0", "x-d", "1"}, [3]string{"0", "x-e", "a\r\nx-evil: 1"}, [3]string{"0", "x-f", "1"}))
	if st != statusBadArgument || string(rh.Peek("x-d")) != "1" || rh.Peek("x-e") != nil || rh.Peek("x-f") != nil || rh.Peek("x-evil") != nil {
		t.Errorf("refused write: status %d, headers:\n%s", st, rh.Header())
	}
}

// TestForeignEditHeadersAllocs: a batch of a set and a remove allocates
// nothing on the host once the header storage has grown.
func TestForeignEditHeadersAllocs(t *testing.T) {
	rt := newRuntime(t)
	p := load(t, rt, PluginSpec{Module: wat(t, "headers")}, Env{})
	s := newStream("/", "Authorization", "Bearer x")
	h := newHostEnv(t, p, s)
	args := editArgs(mapRequestHeaders, [3]string{"0", "x-user", "user-1"}, [3]string{"1", "authorization", ""})
	h.v.cur = h.f
	defer func() { h.v.cur = nil }()
	if n := testing.AllocsPerRun(100, func() {
		if _, st := foreignEditHeadersFunc(h.v, args); st != statusOK {
			t.Fatalf("status %d", st)
		}
		h.f.added = [2]addedHeaders{} // the limits count every run's write
	}); n != 0 {
		t.Errorf("%v allocations per batch", n)
	}
}

// FuzzForeignEditHeaders: arbitrary arguments answer OK, BadArgument or
// NotFound and never panic.
func FuzzForeignEditHeaders(f *testing.F) {
	f.Add(editArgs(mapRequestHeaders, [3]string{"0", "x-a", "1"}, [3]string{"1", "x-b", ""}))
	f.Add(editArgs(mapResponseHeaders, [3]string{"2", "x-a", "1"}))
	f.Add([]byte{})
	rt := newRuntime(f)
	p := load(f, rt, PluginSpec{Module: wat(f, "headers")}, Env{})
	f.Fuzz(func(t *testing.T, args []byte) {
		if len(args) > 20000 {
			return // the test area of guest memory
		}
		h := newHostEnv(t, p, newStream("/fuzz", "X-A", "0"))
		switch st, res := h.callForeign(foreignEditHeaders, args); {
		case st == statusOK && len(res) == 0, st == statusBadArgument, st == statusNotFound:
		default:
			t.Fatalf("status %d result %v", st, res)
		}
	})
}
