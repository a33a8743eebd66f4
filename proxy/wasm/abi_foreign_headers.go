package wasm

import "encoding/binary"

// weft.edit_headers applies several writes to one header map in one call:
// a filter that sets a header and removes another per request (the auth
// plugin: the identity header in, the token out) pays one entry into the
// host instead of one per write.
//
// Arguments (integers little-endian): u32 map type (as
// proxy_replace_header_map_value takes it), u32 count (at most
// maxHeaderEdits), then count × (u8 op: 0 replace, 1 remove, 2 add; u32 len,
// name; u32 len, value — empty for remove), and nothing after. The
// arguments are checked whole before anything is written (malformed:
// BadArgument, nothing written); then each write runs in order as
// proxy_replace_header_map_value, proxy_remove_header_map_value or
// proxy_add_header_map_value would, checks and limits included, and the
// first one refused stops the rest with its status (the writes before it
// stay). Result: OK with no data.
const foreignEditHeaders = "weft.edit_headers"

// maxHeaderEdits bounds the writes of one weft.edit_headers call.
const maxHeaderEdits = 64

// Operations of weft.edit_headers.
const (
	editReplace = 0
	editRemove  = 1
	editAdd     = 2
)

// headerEdit is one parsed write; name and value view guest memory.
type headerEdit struct {
	op          byte
	name, value []byte
}

// foreignEditHeadersFunc is weft.edit_headers.
func foreignEditHeadersFunc(v *vm, args []byte) ([]byte, uint32) {
	if len(args) < 8 {
		return nil, statusBadArgument
	}
	mt := binary.LittleEndian.Uint32(args)
	n := binary.LittleEndian.Uint32(args[4:])
	if n > maxHeaderEdits {
		return nil, statusBadArgument
	}
	rest := args[8:]
	edits := v.edits[:0]
	for range n {
		if len(rest) < 1+4 {
			return nil, statusBadArgument
		}
		e := headerEdit{op: rest[0]}
		rest = rest[1:]
		for _, f := range []*[]byte{&e.name, &e.value} {
			if len(rest) < 4 {
				return nil, statusBadArgument
			}
			l := binary.LittleEndian.Uint32(rest)
			if uint64(l) > uint64(len(rest)-4) {
				return nil, statusBadArgument
			}
			*f, rest = rest[4:4+l], rest[4+l:]
		}
		if e.op > editAdd || e.op == editRemove && len(e.value) != 0 {
			return nil, statusBadArgument
		}
		edits = append(edits, e)
	}
	v.edits = edits[:0]
	if len(rest) != 0 {
		return nil, statusBadArgument
	}
	h, ok := v.headerMap(mt)
	if !ok {
		return nil, statusNotFound
	}
	if h.readOnly || h.empty {
		return nil, statusBadArgument
	}
	for _, e := range edits {
		if e.op == editRemove {
			h.del(e.name)
			continue
		}
		if err := checkPair(e.name, e.value, h.req != nil); err != nil {
			return nil, v.refuseWrite(err)
		}
		if !v.admitHeaders(mt, 1, len(e.name)+len(e.value)) {
			return nil, statusBadArgument
		}
		var st uint32
		if e.op == editReplace {
			st = h.set(e.name, e.value)
		} else {
			st = h.add(e.name, e.value)
		}
		if st != statusOK {
			return nil, st
		}
	}
	return nil, statusOK
}
