// Package dataimage takes a Wasm module's active data segments out of the
// module and lays them out as the initial image of its linear memory, so a
// host can map that image copy-on-write into every instance instead of
// copying the segments into each one.
//
// A Go guest has about 29,000 data segments (0.9 MB: its read-only data,
// type descriptors, function tables). wazero copies every segment into each
// new instance's memory (every page dirty, about 1 MiB resident per VM)
// and keeps a slice header per segment per instance (0.7 MiB of Go heap per
// VM). Mapped from one shared image, the pages a VM never writes stay
// shared, and nothing is kept per segment.
package dataimage

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// PageSize is a Wasm page.
const PageSize = 65536

const (
	secMemory    = 5
	secData      = 11
	secDataCount = 12
)

// Split returns module without its data segments (an empty data section
// in its place) and the image they make: the bytes of linear memory from
// address 0 to the end of the last segment, zeros between segments. It
// returns ok false, and module unchanged, when the module is not of the
// form it handles: one memory defined by the module (none imported), only
// active segments with constant offsets that fit the memory's initial
// size, no data count section (no memory.init or data.drop). err is set
// only for a module it cannot read.
func Split(module []byte) (code, image []byte, ok bool, err error) {
	if len(module) < 8 || string(module[:4]) != "\x00asm" {
		return module, nil, false, errors.New("dataimage: not a Wasm module")
	}
	r := reader{b: module, i: 8}
	var (
		minPages                     uint64
		memories                     = -1
		dataHead, dataStart, dataEnd int
	)
	for !r.done() {
		pos := r.i
		id := r.byte()
		size := int(r.u32())
		start := r.i
		if r.err != nil || size > len(module)-start {
			return module, nil, false, fmt.Errorf("dataimage: section %d: truncated", id)
		}
		switch id {
		case secMemory:
			s := reader{b: module[:start+size], i: start}
			memories = int(s.u32())
			if memories == 1 {
				flags := s.byte()
				minPages = s.u64()
				if flags&1 != 0 {
					s.u64()
				}
			}
			if s.err != nil {
				return module, nil, false, fmt.Errorf("dataimage: memory section: %w", s.err)
			}
		case secDataCount:
			return module, nil, false, nil
		case secData:
			dataHead, dataStart, dataEnd = pos, start, start+size
		}
		r.i = start + size
	}
	if r.err != nil {
		return module, nil, false, r.err
	}
	if memories != 1 || dataEnd == 0 {
		return module, nil, false, nil
	}
	memBytes := minPages * PageSize
	type seg struct{ off, from, to int }
	s := reader{b: module[:dataEnd], i: dataStart}
	n := s.u32()
	segs := make([]seg, 0, n)
	end := 0
	for range n {
		switch flags := s.u32(); flags {
		case 0:
		case 2:
			if s.u32() != 0 {
				return module, nil, false, nil
			}
		default: // passive
			return module, nil, false, nil
		}
		if s.byte() != 0x41 { // i32.const
			return module, nil, false, nil
		}
		off := s.s32()
		if s.byte() != 0x0b { // end
			return module, nil, false, nil
		}
		l := int(s.u32())
		from := s.i
		s.bytes(l)
		if s.err != nil {
			return module, nil, false, fmt.Errorf("dataimage: data segment: %w", s.err)
		}
		if off < 0 || uint64(off)+uint64(l) > memBytes {
			return module, nil, false, nil // let the runtime refuse it
		}
		segs = append(segs, seg{int(off), from, from + l})
		end = max(end, int(off)+l)
	}
	if s.err != nil || s.i != dataEnd {
		return module, nil, false, fmt.Errorf("dataimage: data section: malformed")
	}
	image = make([]byte, end)
	for _, g := range segs {
		copy(image[g.off:], module[g.from:g.to])
	}
	code = make([]byte, 0, len(module)-(dataEnd-dataHead)+3)
	code = append(code, module[:dataHead]...)
	code = append(code, secData, 1, 0) // no segments
	code = append(code, module[dataEnd:]...)
	return code, image, true, nil
}

type reader struct {
	b   []byte
	i   int
	err error
}

func (r *reader) done() bool { return r.err != nil || r.i >= len(r.b) }

func (r *reader) byte() byte {
	if r.i >= len(r.b) {
		r.err = errors.New("unexpected end")
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *reader) bytes(n int) {
	if n < 0 || n > len(r.b)-r.i {
		r.err = errors.New("unexpected end")
		r.i = len(r.b)
		return
	}
	r.i += n
}

func (r *reader) u64() uint64 {
	if r.i >= len(r.b) {
		r.err = errors.New("unexpected end")
		return 0
	}
	v, n := binary.Uvarint(r.b[r.i:])
	if n <= 0 {
		r.err = errors.New("bad LEB128")
		r.i = len(r.b)
		return 0
	}
	r.i += n
	return v
}

func (r *reader) u32() uint32 { return uint32(r.u64()) }

// s32 reads a signed LEB128 (an i32.const immediate).
func (r *reader) s32() int64 {
	var v int64
	var shift uint
	for {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return int64(int32(v))
		}
		if shift >= 35 {
			r.err = errors.New("bad LEB128")
			return 0
		}
	}
}
