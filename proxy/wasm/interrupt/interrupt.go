// Package interrupt rewrites a Wasm module so a host can stop a guest
// stuck in a loop without the cost of wazero's termination checks.
//
// wazero's WithCloseOnContextDone compiles a call back into Go at every
// loop back-edge and starts a watcher goroutine on every call into the
// guest: for a Go-SDK filter that is most of its cost per request.
// Instrument instead adds two mutable i32 globals, the interrupt flag
// (exported as GlobalName) and a countdown (CountdownName), and at the top
// of every loop body
//
//	global.get $countdown          ;; every YieldEvery loop iterations,
//	i32.const 1  i32.sub           ;; or at once when the host set the
//	global.set $countdown          ;; countdown to 1:
//	global.get $countdown
//	i32.eqz
//	if
//	  global.get $interrupt        ;; the host's deadline set it: stop
//	  if  unreachable  end
//	  i32.const 0  memory.grow 0  drop   ;; step out into Go once
//	  i32.const YieldEvery  global.set $countdown
//	end
//
// which compiled code runs inline: a load, a subtraction, a store and a
// branch (the second get reuses the value just set). The flag is read only
// on the rare path, so a loop iteration reads one global, not two; in a Go
// guest, whose runtime and maps loop a lot, that took half of what the
// checks cost. The host stops a callback that overran its deadline by
// setting the flag and then the countdown to 1: the guest traps at its next
// loop iteration, and the host replaces the VM as for any trap. The
// guest's decrement is not atomic with the host's store, so the host's 1
// may be overwritten by the guest's own count; the flag is then seen at
// the next regular step, at most YieldEvery iterations later.
// The countdown matters as much: Go cannot preempt native code, so a guest
// spinning without ever returning to Go would hold its thread through a
// garbage collection's stop-the-world, and every goroutine, the deadline
// timer included, would wait for it for ever. memory.grow by 0 pages is an
// exit into Go in wazero's compiled code (it changes nothing): a safe point
// every YieldEvery iterations. Code without loops ends on its own
// (straight-line code) or by stack overflow (deep recursion), so loop
// headers are where a guest can spin, and recursion that branches without
// going deep (fib(60) written recursively): it runs for ever within a
// bounded stack and never reaches a loop header, so it would neither stop
// nor step out into Go, and the next garbage collection's stop-the-world
// would wait for it (the whole process stalls). The same check therefore
// runs on every cycle of calls that passes no function entering a loop
// first (callgraph.go): at the entry of every function that a cycle of
// direct calls re-enters (the targets of the back edges of a walk of the
// call graph), and just before every call_indirect (function pointers, Go
// closures and interface methods) whose possible targets, by type, can
// lead back to it; other calls cost nothing. A module needs a memory for
// this (every Proxy-Wasm module has one).
//
// The rewrite is structural: it decodes every instruction, so branch
// depths, indices and offsets keep their meaning (an if block opened and
// closed inside the loop's body shifts nothing), and only the global,
// export and code sections change. A module it cannot decode (an opcode it
// does not know) gets an error, and the host falls back to wazero's
// termination checks.
package interrupt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// GlobalName is the export name of the interrupt flag.
const GlobalName = "weft_interrupt"

// CountdownName is the export name of the countdown. A host reading it at
// two moments sees whether the guest ran loop iterations in between (a
// guest that is spinning) or not (it was not scheduled, or it waits in a
// host function).
const CountdownName = "weft_countdown"

// YieldEvery is how many loop iterations run between two exits into Go.
const YieldEvery = 1000

// Section ids.
const (
	secCustom   = 0
	secImport   = 2
	secMemory   = 5
	secGlobal   = 6
	secExport   = 7
	secCode     = 10
	secDataCnt  = 12
	secTag      = 13
	kindGlobal  = 0x03
	opLoop      = 0x03
	opEnd       = 0x0b
	opGlobalGet = 0x23
	opGlobalSet = 0x24
)

// order is each section's place in a module (the tag section sits between
// memory and global; datacount between element and code).
func order(id byte) int {
	switch id {
	case secTag:
		return 55 // after memory (5), before global (6)
	case secDataCnt:
		return 95 // after element (9), before code (10)
	}
	return int(id) * 10
}

type section struct {
	id   byte
	body []byte
}

// Instrument returns module with the interrupt flag and loop checks added.
func Instrument(module []byte) ([]byte, error) {
	if len(module) < 8 || !bytes.Equal(module[:4], []byte("\x00asm")) {
		return nil, errors.New("interrupt: not a Wasm module")
	}
	if binary.LittleEndian.Uint32(module[4:8]) != 1 {
		return nil, errors.New("interrupt: not a Wasm 1.0 module (a component?)")
	}
	var secs []section
	r := reader{b: module, i: 8}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return nil, fmt.Errorf("interrupt: section %d: %w", id, r.err)
		}
		secs = append(secs, section{id: id, body: body})
	}
	importedGlobals := 0
	definedGlobals := 0
	hasMemory := false
	for _, s := range secs {
		switch s.id {
		case secMemory:
			hasMemory = true
		case secImport:
			_, n, mems, err := countImports(s.body)
			if err != nil {
				return nil, err
			}
			importedGlobals = n
			hasMemory = hasMemory || mems > 0
		case secGlobal:
			sr := reader{b: s.body}
			definedGlobals = int(sr.u32())
			if sr.err != nil {
				return nil, fmt.Errorf("interrupt: global section: %w", sr.err)
			}
		case secExport:
			if bytes.Contains(s.body, []byte(GlobalName)) || bytes.Contains(s.body, []byte(CountdownName)) || bytes.Contains(s.body, []byte(StageName)) || bytes.Contains(s.body, []byte(StopName)) {
				return nil, errors.New("interrupt: the module already exports " + GlobalName)
			}
		}
	}
	if !hasMemory {
		return nil, errors.New("interrupt: the module has no memory")
	}
	idx := uint32(importedGlobals + definedGlobals) // the flag; then the countdown, the stage, the stop flag
	count, stage, stop := idx+1, idx+2, idx+3
	check := appendU32([]byte{opGlobalGet}, count)
	check = append(check, 0x41, 0x01, 0x6b, opGlobalSet) // i32.const 1 i32.sub global.set
	check = appendU32(check, count)
	check = appendU32(append(check, opGlobalGet), count)
	check = append(check, 0x45, 0x04, 0x40) // i32.eqz if
	check = appendU32(append(check, opGlobalGet), idx)
	check = append(check, 0x04, 0x40, 0x00, opEnd)      // if (flag) unreachable end
	check = append(check, 0x41, 0x00, 0x40, 0x00, 0x1a) // i32.const 0 memory.grow 0 drop
	check = appendS32(append(check, 0x41), YieldEvery)
	check = appendU32(append(check, opGlobalSet), count)
	check = append(check, opEnd)

	// The callback dispatcher (dispatch.go), unless the module's sections
	// do not allow it or it has one already.
	disp, hasDisp := newDispatcher(secs, stage, stop)
	for _, s := range secs {
		if s.id == secExport && bytes.Contains(s.body, []byte(DispatchName)) {
			hasDisp = false
		}
	}

	out := append([]byte(nil), module[:8]...)
	haveGlobal, haveExport := false, false
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	// The new globals: the flag (mutable i32 0), the countdown, and the
	// dispatcher's stage and stop flag (mutable i32 0).
	newGlobal := []byte{0x7f, 0x01, 0x41, 0x00, opEnd, 0x7f, 0x01}
	newGlobal = append(appendS32(append(newGlobal, 0x41), YieldEvery), opEnd)
	newGlobal = append(newGlobal, 0x7f, 0x01, 0x41, 0x00, opEnd, 0x7f, 0x01, 0x41, 0x00, opEnd)
	newExport := appendName(nil, GlobalName)
	newExport = append(newExport, kindGlobal)
	newExport = appendU32(newExport, idx)
	newExport = appendName(newExport, CountdownName)
	newExport = append(newExport, kindGlobal)
	newExport = appendU32(newExport, count)
	nExports := uint32(2)
	if hasDisp {
		newExport = appendName(newExport, DispatchName)
		newExport = append(newExport, kindFunc)
		newExport = appendU32(newExport, disp.funcIdx)
		newExport = appendName(newExport, StageName)
		newExport = append(newExport, kindGlobal)
		newExport = appendU32(newExport, stage)
		newExport = appendName(newExport, StopName)
		newExport = append(newExport, kindGlobal)
		newExport = appendU32(newExport, stop)
		nExports += 3
	}
	for _, s := range secs {
		if s.id != secCustom {
			if !haveGlobal && order(s.id) > order(secGlobal) {
				emit(secGlobal, append([]byte{4}, newGlobal...))
				haveGlobal = true
			}
			if !haveExport && order(s.id) > order(secExport) {
				emit(secExport, append(appendU32(nil, nExports), newExport...))
				haveExport = true
			}
		}
		switch s.id {
		case secGlobal:
			body, err := appendToVec(s.body, newGlobal, 4)
			if err != nil {
				return nil, fmt.Errorf("interrupt: global section: %w", err)
			}
			emit(secGlobal, body)
			haveGlobal = true
		case secExport:
			body, err := appendToVec(s.body, newExport, nExports)
			if err != nil {
				return nil, fmt.Errorf("interrupt: export section: %w", err)
			}
			emit(secExport, body)
			haveExport = true
		case secCode:
			body, err := instrumentCode(secs, s.body, check)
			if err == nil && hasDisp {
				body, err = appendToVec(body, disp.body, 1)
			}
			if err != nil {
				return nil, err
			}
			emit(secCode, body)
		case secType, secFunc:
			body := s.body
			if hasDisp {
				entry := disp.typeEntry
				if s.id == secFunc {
					entry = appendU32(nil, disp.typeIdx)
				}
				var err error
				if body, err = appendToVec(body, entry, 1); err != nil {
					return nil, fmt.Errorf("interrupt: section %d: %w", s.id, err)
				}
			}
			emit(s.id, body)
		default:
			emit(s.id, s.body)
		}
	}
	if !haveGlobal {
		emit(secGlobal, append([]byte{4}, newGlobal...))
	}
	if !haveExport {
		emit(secExport, append(appendU32(nil, nExports), newExport...))
	}
	return out, nil
}

// appendToVec re-encodes a vector section body with k more entries.
func appendToVec(body, entries []byte, k uint32) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	out := appendU32(nil, n+k)
	out = append(out, body[r.i:]...)
	return append(out, entries...), nil
}

// countImports counts the imported functions, globals and memories.
func countImports(body []byte) (funcs, globals, memories int, err error) {
	r := reader{b: body}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0x00: // func
			r.u32()
			funcs++
		case 0x01: // table
			r.refType()
			r.limits()
		case 0x02: // memory
			r.limits()
			memories++
		case kindGlobal:
			r.valType()
			r.byte()
			globals++
		case 0x04: // tag
			r.byte()
			r.u32()
		default:
			return 0, 0, 0, fmt.Errorf("interrupt: import %d: unknown kind 0x%02x", i, kind)
		}
	}
	if r.err != nil {
		return 0, 0, 0, fmt.Errorf("interrupt: import section: %w", r.err)
	}
	return funcs, globals, memories, nil
}

// instrumentCode rewrites the code section: every function body gets the
// check after the block type of each loop, and where the call graph places
// it (callgraph.go): at the entry of the functions that recursion through
// direct calls re-enters, before the indirect calls that can recurse.
func instrumentCode(secs []section, body, check []byte) ([]byte, error) {
	r := reader{b: body}
	n := r.u32()
	codes := make([][]byte, 0, min(n, 1<<16))
	for i := uint32(0); i < n; i++ {
		size := r.u32()
		code := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("interrupt: function %d: %w", i, r.err)
		}
		codes = append(codes, code)
	}
	if !r.done() {
		return nil, errors.New("interrupt: code section has trailing bytes")
	}
	g, err := buildCallGraph(secs, codes)
	if err != nil {
		return nil, err
	}
	at := g.place()
	out := appendU32(nil, n)
	var fn []byte
	for i, code := range codes {
		var err error
		fn, err = instrumentFunc(fn[:0], code, check, at.entry[i], at.site[i])
		if err != nil {
			return nil, fmt.Errorf("interrupt: function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	return out, nil
}

// instrumentFunc rewrites one body: the check after each loop's block
// type, at the entry when entry is set, and before indirect call site i
// (in code order) when sites[i] is set.
func instrumentFunc(out, code, check []byte, entry bool, sites []bool) ([]byte, error) {
	r := reader{b: code}
	groups := r.u32()
	for g := uint32(0); g < groups && r.err == nil; g++ {
		r.u32()
		r.valType()
	}
	if r.err != nil {
		return nil, fmt.Errorf("locals: %w", r.err)
	}
	out = append(out, code[:r.i]...)
	if entry {
		out = append(out, check...)
	}
	site := 0
	for !r.done() {
		start := r.i
		op := r.byte()
		if err := r.immediates(op); err != nil {
			return nil, err
		}
		if r.err != nil {
			return nil, fmt.Errorf("opcode 0x%02x at %d: %w", op, start, r.err)
		}
		if isIndirectCall(op) {
			// The check leaves the operand stack as it found it, so it
			// fits between the call's operands and the call.
			if site < len(sites) && sites[site] {
				out = append(out, check...)
			}
			site++
		}
		out = append(out, code[start:r.i]...)
		if op == opLoop {
			out = append(out, check...)
		}
	}
	if len(code) == 0 || code[len(code)-1] != opEnd {
		return nil, errors.New("body does not end with end")
	}
	return out, nil
}

// immediates skips the immediates of op.
func (r *reader) immediates(op byte) error {
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == opEnd || op == 0x0f || op == 0x0a || op == 0x19:
		// unreachable, nop, else, end, return, throw_ref, catch_all
	case op == 0x02 || op == opLoop || op == 0x04 || op == 0x06: // block, loop, if, try
		r.blockType()
	case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x18: // catch, throw, rethrow, delegate
		r.u32()
	case op == 0x1f: // try_table
		r.blockType()
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			switch r.byte() {
			case 0x00, 0x01:
				r.u32()
				r.u32()
			case 0x02, 0x03:
				r.u32()
			default:
				return errors.New("try_table: unknown catch kind")
			}
		}
	case op == 0x0c || op == 0x0d: // br, br_if
		r.u32()
	case op == 0x0e: // br_table
		n := r.u32()
		for i := uint32(0); i <= n && r.err == nil; i++ {
			r.u32()
		}
	case op == 0x10 || op == 0x12 || op == 0x14 || op == 0x15: // call, return_call, call_ref, return_call_ref
		r.u32()
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		r.u32()
		r.u32()
	case op == 0x1a || op == 0x1b: // drop, select
	case op == 0x1c: // select t*
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.valType()
		}
	case op >= 0x20 && op <= 0x26: // locals, globals, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memarg()
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41:
		r.s64()
	case op == 0x42:
		r.s64()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op >= 0x45 && op <= 0xc4: // numeric
	case op == 0xd0: // ref.null
		r.heapType()
	case op == 0xd1 || op == 0xd3: // ref.is_null, ref.as_non_null
	case op == 0xd2 || op == 0xd4 || op == 0xd5: // ref.func, br_on_null, br_on_non_null
		r.u32()
	case op == 0xfc:
		return r.miscOp()
	case op == 0xfd:
		return r.simdOp()
	case op == 0xfe:
		return r.atomicOp()
	default:
		return fmt.Errorf("unknown opcode 0x%02x", op)
	}
	return nil
}

func (r *reader) miscOp() error {
	switch sub := r.u32(); {
	case sub <= 7: // trunc_sat
	case sub == 8: // memory.init
		r.u32()
		r.u32()
	case sub == 9 || sub == 13: // data.drop, elem.drop
		r.u32()
	case sub == 10 || sub == 12 || sub == 14: // memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	case sub == 11 || (sub >= 15 && sub <= 17): // memory.fill, table.grow/size/fill
		r.u32()
	default:
		return fmt.Errorf("unknown 0xfc opcode %d", sub)
	}
	return nil
}

func (r *reader) simdOp() error {
	switch sub := r.u32(); {
	case sub <= 11: // v128 loads and store
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.bytes(1)
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.bytes(1)
	case sub == 92 || sub == 93: // load32_zero, load64_zero
		r.memarg()
	case sub <= 0x113: // the rest (and relaxed SIMD) take no immediate
	default:
		return fmt.Errorf("unknown 0xfd opcode %d", sub)
	}
	return nil
}

func (r *reader) atomicOp() error {
	switch sub := r.u32(); {
	case sub == 3: // atomic.fence
		r.bytes(1)
	case sub <= 0x4e:
		r.memarg()
	default:
		return fmt.Errorf("unknown 0xfe opcode %d", sub)
	}
	return nil
}

// reader decodes LEB128 and friends; the first error sticks.
type reader struct {
	b   []byte
	i   int
	err error
}

func (r *reader) done() bool { return r.err != nil || r.i >= len(r.b) }

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("truncated %s at byte %d", what, r.i)
	}
}

func (r *reader) byte() byte {
	if r.i >= len(r.b) {
		r.fail("byte")
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || r.i+n > len(r.b) {
		r.fail("bytes")
		r.i = len(r.b)
		return nil
	}
	b := r.b[r.i : r.i+n]
	r.i += n
	return b
}

func (r *reader) u64() uint64 {
	var v uint64
	for shift := 0; shift < 70; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	r.err = errors.New("LEB128 too long")
	return 0
}

func (r *reader) u32() uint32 { return uint32(r.u64()) }

func (r *reader) s64() {
	for n := 0; n < 10; n++ {
		if c := r.byte(); r.err != nil || c < 0x80 {
			return
		}
	}
	r.err = errors.New("LEB128 too long")
}

func (r *reader) name() { r.bytes(int(r.u32())) }

func (r *reader) memarg() {
	align := r.u32()
	if align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.u64()
}

func (r *reader) limits() {
	flags := r.byte()
	r.u64()
	if flags&1 != 0 {
		r.u64()
	}
}

// valType reads a value type: a one-byte type, or a (ref null? ht).
func (r *reader) valType() {
	switch c := r.byte(); c {
	case 0x63, 0x64:
		r.heapType()
	}
}

func (r *reader) refType() { r.valType() }

func (r *reader) heapType() {
	if r.i < len(r.b) && r.b[r.i] >= 0x40 && r.b[r.i] < 0x80 {
		r.i++ // an abstract heap type, one byte
		return
	}
	r.s64() // a type index (s33)
}

func (r *reader) blockType() {
	if r.i >= len(r.b) {
		r.fail("block type")
		return
	}
	switch c := r.b[r.i]; {
	case c == 0x40 || (c >= 0x6f && c <= 0x7f):
		r.i++
	case c == 0x63 || c == 0x64:
		r.i++
		r.heapType()
	default:
		r.s64() // a type index (s33)
	}
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// appendS32 appends v as a signed LEB128 (i32.const's immediate).
func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
