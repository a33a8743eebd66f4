package wasm

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// batchArgs encodes weft.get_properties arguments for paths.
func batchArgs(paths ...string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(paths)))
	for _, p := range paths {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// TestGetProperties: weft.get_properties answers each path as
// proxy_get_property would, in order, a missing one as 0xFFFFFFFF and an
// empty one as length 0, and refuses malformed arguments.
func TestGetProperties(t *testing.T) {
	v := &vm{p: &Plugin{spec: PluginSpec{Name: "tele", RootID: "root"}}, rootAttrs: map[string][]byte{"set.here": {}}}
	out, st := foreignGetPropertiesFunc(v, batchArgs("plugin_name", "request\x00path", "set\x00here", "plugin_root_id"))
	if st != statusOK {
		t.Fatalf("status %d", st)
	}
	want := binary.LittleEndian.AppendUint32(nil, 4)
	want = append(want, "tele"...)
	want = binary.LittleEndian.AppendUint32(want, propertyMissing) // no stream: no request
	want = binary.LittleEndian.AppendUint32(want, 0)
	want = binary.LittleEndian.AppendUint32(want, 4)
	want = append(want, "root"...)
	if !bytes.Equal(out, want) {
		t.Fatalf("result %q, want %q", out, want)
	}
	if out, st := foreignGetPropertiesFunc(v, batchArgs()); st != statusOK || len(out) != 0 {
		t.Errorf("no paths: %q, status %d", out, st)
	}
	long := make([]string, maxBatchProperties+1)
	for i := range long {
		long[i] = "plugin_name"
	}
	for name, args := range map[string][]byte{
		"empty":          nil,
		"short count":    {1, 0},
		"missing path":   batchArgs("plugin_name")[:8],
		"path too long":  append(binary.LittleEndian.AppendUint32([]byte{1, 0, 0, 0}, 99), "plugin_name"...),
		"trailing bytes": append(batchArgs("plugin_name"), 0),
		"too many paths": batchArgs(long...),
	} {
		if _, st := foreignGetPropertiesFunc(v, args); st != statusBadArgument {
			t.Errorf("%s: status %d, want BadArgument", name, st)
		}
	}
}
