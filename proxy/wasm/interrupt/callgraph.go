package interrupt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The call graph decides where, besides loop headers, a guest passes the
// check: every cycle of calls a guest can run for ever without a loop
// must pass one, or such a guest is never stopped and never steps out into
// Go (a garbage collection's stop-the-world then waits on it).
//
// A call's targets are known from the code for call and return_call. For
// call_indirect and return_call_indirect they are any function the module
// can put in a table whose type matches the call's type structurally (the
// check call_indirect itself makes): the functions of its element segments
// (active, passive or declarative, so table.init and table.set with ref.func
// are included), the operands of ref.func anywhere, and, when the outside can
// put functions in the module's tables (an imported or exported table, an
// element expression or global of unknown value), every exported function.
// A call_ref or return_call_ref (typed function references, not enabled in
// Weft's runtime) may reach any of them, whatever its type.
//
// Where the check goes, besides loop headers:
//   - nowhere more for a function whose body enters a loop before it can
//     call anything (loopFirst): every call of it passes that loop's check.
//     Go's compiler starts two thirds of a module's functions so (its
//     resumption dispatch wrapped in a loop), so in Go guests this covers
//     most cycles;
//   - other cycles of direct calls only: at the entry of the targets of the
//     back edges of a depth-first walk of the direct call graph without
//     those functions (backEdgeTargets);
//   - cycles through an indirect call that avoid all of these: just before
//     each indirect call site whose possible targets can lead back to the
//     function holding it (its signature's node and the function share a
//     strongly connected component of the graph with a node per signature
//     and without the functions checked at entry).
//
// A call to an imported function may also call the module back: the host
// hands data to the guest through its exported allocator (proxy/wasm's
// vm.alloc calls proxy_on_memory_allocate, or malloc, from host functions),
// so every call to an import counts as a direct call of the allocator
// exports (allocatorExports), and so does every indirect call when an
// import may be in a table (the module puts one there, or the outside can). An allocator that calls a host function
// handing over data then sits on a cycle of direct calls and gets a check
// (the host also refuses to enter the allocator from inside it and traps
// the call). In a Go guest these edges add no check: the cycles they close
// already pass a loop-first function.
//
// Every cycle has a function checked at entry on it, or is made of direct
// calls only (then a walk of them finds a back edge on it), or has an
// indirect call on it whose site shares its component with its
// signature's node: so every cycle passes a check. The checks sit at call
// sites rather than at the entry of the indirectly callable functions:
// those are nearly every function of a Go module (all are in its table,
// with one type) and of a C++ one with virtual calls, and their entries
// run on direct calls too.

// Indirect-call opcodes.
const (
	opCallIndirect       = 0x11
	opReturnCallIndirect = 0x13
	opCallRef            = 0x14
	opReturnCallRef      = 0x15
	opRefFunc            = 0xd2
	secTable             = 4
	secElem              = 9
)

// allocatorExports are the exports a host may call from inside a host
// function (proxy/wasm's vm.alloc looks them up in this order).
var allocatorExports = []string{"proxy_on_memory_allocate", "malloc"}

func isIndirectCall(op byte) bool {
	return op == opCallIndirect || op == opReturnCallIndirect || op == opCallRef || op == opReturnCallRef
}

// callGraph is a module's calls between its defined functions (numbered
// among the defined ones), as the rewrite sees them.
type callGraph struct {
	// direct lists, per function, the functions it calls with call or
	// return_call.
	direct [][]uint32
	// sites lists, per function, the signature class of each of its
	// indirect call sites, in code order; anyClass for call_ref.
	sites [][]uint32
	// class is each function's signature class; taken says which
	// functions an indirect call can reach.
	class []uint32
	taken []bool
	// callsHost says which functions call an imported function.
	callsHost []bool
	// loopEntry says which functions enter a loop before anything else
	// (loopFirst).
	loopEntry []bool
	// classes is the number of signature classes; anyClass (== classes)
	// stands for "any signature".
	classes uint32
}

func (g *callGraph) anyClass() uint32 { return g.classes }

// placement is where the checks go: at the entry of a function, before an
// indirect call site (per function, in code order).
type placement struct {
	entry []bool
	site  [][]bool
}

// place computes where the checks go (see the comment at the top).
func (g *callGraph) place() placement {
	n := uint32(len(g.direct))
	// A function whose body enters a loop before anything else passes
	// the loop's check on every call: no cycle through it needs another.
	// (Two thirds of a Go module's functions start so.) The other cycles
	// of direct calls get a check at the entry of their back edges'
	// targets.
	cut := append([]bool(nil), g.loopEntry...)
	direct := make([][]uint32, n)
	for f, calls := range g.direct {
		for _, w := range calls {
			if !cut[w] {
				direct[f] = append(direct[f], w)
			}
		}
	}
	p := placement{entry: backEdgeTargets(direct), site: make([][]bool, n)}
	for f, e := range p.entry {
		cut[f] = cut[f] || e
	}
	// What is left are cycles through an indirect call. The graph without
	// the functions checked at entry, with a node per signature class
	// (n + class, the last the "any" class): f → class of each of its
	// sites; class → each taken function of that class; any → every taken
	// function.
	nodes := n + g.classes + 1
	byClass := make([][]uint32, g.classes+1)
	for f := uint32(0); f < n; f++ {
		if g.taken[f] && !cut[f] {
			byClass[g.class[f]] = append(byClass[g.class[f]], f)
			if g.class[f] != g.classes {
				byClass[g.classes] = append(byClass[g.classes], f)
			}
		}
	}
	succ := func(v uint32, visit func(uint32)) {
		if v >= n {
			for _, f := range byClass[v-n] {
				visit(f)
			}
			return
		}
		for _, w := range direct[v] {
			if !cut[w] {
				visit(w)
			}
		}
		for _, c := range g.sites[v] {
			visit(n + c)
		}
	}
	comp := components(nodes, succ)
	for f := uint32(0); f < n; f++ {
		if len(g.sites[f]) == 0 || cut[f] {
			continue
		}
		p.site[f] = make([]bool, len(g.sites[f]))
		for i, c := range g.sites[f] {
			p.site[f][i] = comp[n+c] == comp[f]
		}
	}
	return p
}

// backEdgeTargets marks the targets of the back edges of a depth-first
// walk of calls (by function): every cycle of those calls has one.
func backEdgeTargets(calls [][]uint32) []bool {
	const (
		white = iota
		grey  // on the walk's path
		black // done
	)
	color := make([]byte, len(calls))
	entry := make([]bool, len(calls))
	type frame struct{ f, next uint32 }
	var stack []frame
	for root := range calls {
		if color[root] != white {
			continue
		}
		color[root] = grey
		stack = append(stack[:0], frame{f: uint32(root)})
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if int(top.next) == len(calls[top.f]) {
				color[top.f] = black
				stack = stack[:len(stack)-1]
				continue
			}
			g := calls[top.f][top.next]
			top.next++
			switch color[g] {
			case grey: // a back edge: g is re-entered
				entry[g] = true
			case white:
				color[g] = grey
				stack = append(stack, frame{f: g})
			}
		}
	}
	return entry
}

// components numbers the strongly connected components of a graph of
// nodes 0..nodes-1 whose edges succ lists (Tarjan's algorithm, without
// recursion: a module's call graph can be deep).
func components(nodes uint32, succ func(uint32, func(uint32))) []uint32 {
	const unvisited = ^uint32(0)
	index := make([]uint32, nodes)
	low := make([]uint32, nodes)
	comp := make([]uint32, nodes)
	onStack := make([]bool, nodes)
	for i := range index {
		index[i] = unvisited
	}
	// Each frame keeps its node's successors, listed once.
	type frame struct {
		v    uint32
		next int
		succ []uint32
	}
	var (
		frames []frame
		stack  []uint32
		next   uint32
		ncomp  uint32
	)
	push := func(v uint32) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		var s []uint32
		succ(v, func(w uint32) { s = append(s, w) })
		frames = append(frames, frame{v: v, succ: s})
	}
	for root := uint32(0); root < nodes; root++ {
		if index[root] != unvisited {
			continue
		}
		push(root)
		for len(frames) > 0 {
			top := &frames[len(frames)-1]
			if top.next < len(top.succ) {
				w := top.succ[top.next]
				top.next++
				switch {
				case index[w] == unvisited:
					push(w)
				case onStack[w]:
					low[top.v] = min(low[top.v], index[w])
				}
				continue
			}
			v := top.v
			frames = frames[:len(frames)-1]
			if len(frames) > 0 {
				parent := frames[len(frames)-1].v
				low[parent] = min(low[parent], low[v])
			}
			if low[v] == index[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp[w] = ncomp
					if w == v {
						break
					}
				}
				ncomp++
			}
		}
	}
	return comp
}

// moduleInfo is what buildCallGraph reads from a module's sections.
type moduleInfo struct {
	importedFuncs uint32
	funcTypes     []uint32 // type index of each defined function
	typeClass     []uint32 // signature class of each type index
	classes       uint32
	gcTypes       bool // a type that is not a plain function type: classes are not known
	exported      []uint32
	// allocators are the defined functions exported as an allocator
	// (allocatorExports), numbered among the defined ones; hostInTables
	// says an indirect call may reach an imported function.
	allocators    []uint32
	hostInTables  bool
	outsideTables bool // the outside can put functions in a table
	refs          []uint32
	// globals counts the module's globals (imported and defined);
	// globalRefs are the global indices its constant expressions read.
	globals    uint32
	globalRefs []uint32
	// refGlobal says, per global index, whether it is a mutable global
	// holding a reference (the outside may write one it exports).
	refGlobal []bool
}

// buildCallGraph reads the module's calls: codes are the bodies of its
// defined functions.
func buildCallGraph(secs []section, codes [][]byte) (*callGraph, error) {
	var mi moduleInfo
	for _, s := range secs {
		if err := mi.read(s); err != nil {
			return nil, err
		}
	}
	n := uint32(len(codes))
	if uint32(len(mi.funcTypes)) != n {
		return nil, fmt.Errorf("interrupt: %d function declarations for %d bodies", len(mi.funcTypes), n)
	}
	// The rewrite adds globals (the flag, the countdown, the stage and
	// stop globals) and a function (weft_dispatch) past the module's own:
	// an index past those in the module would name them once rewritten,
	// and a guest could then clear its own flag, reset its deadline (the
	// stage) or call the dispatcher. Such a module is invalid as it is;
	// it is refused here rather than made valid.
	funcs := mi.importedFuncs + n
	for _, idx := range append(mi.refs, mi.exported...) {
		if idx >= funcs {
			return nil, fmt.Errorf("interrupt: function index %d out of range (%d functions)", idx, funcs)
		}
	}
	mi.hostInTables = mi.outsideTables
	for _, idx := range mi.refs {
		mi.hostInTables = mi.hostInTables || idx < mi.importedFuncs
	}
	for _, idx := range mi.allocators {
		if idx >= n { // (sections out of order: a malformed module)
			return nil, fmt.Errorf("interrupt: allocator export %d out of range (%d functions)", idx, n)
		}
	}
	for _, idx := range mi.globalRefs {
		if idx >= mi.globals {
			return nil, fmt.Errorf("interrupt: global index %d out of range (%d globals)", idx, mi.globals)
		}
	}
	g := &callGraph{
		direct:    make([][]uint32, n),
		sites:     make([][]uint32, n),
		class:     make([]uint32, n),
		taken:     make([]bool, n),
		callsHost: make([]bool, n),
		loopEntry: make([]bool, n),
		classes:   mi.classes,
	}
	classOf := func(typeIdx uint32) uint32 {
		// (A class past the count comes from a second type section: a
		// malformed module, which wazero refuses anyway.)
		if mi.gcTypes || typeIdx >= uint32(len(mi.typeClass)) || mi.typeClass[typeIdx] >= mi.classes {
			return g.anyClass()
		}
		return mi.typeClass[typeIdx]
	}
	for f, t := range mi.funcTypes {
		g.class[f] = classOf(t)
	}
	take := func(idx uint32) {
		if idx >= mi.importedFuncs && idx-mi.importedFuncs < n {
			g.taken[idx-mi.importedFuncs] = true
		}
	}
	for _, idx := range mi.refs {
		take(idx)
	}
	if mi.outsideTables {
		for _, idx := range mi.exported {
			take(idx)
		}
	}
	for f, code := range codes {
		g.loopEntry[f] = loopFirst(code)
		if err := g.readCalls(uint32(f), code, &mi, classOf, take); err != nil {
			return nil, fmt.Errorf("interrupt: function %d: %w", f, err)
		}
	}
	// The host may call the allocator back from any host function.
	for f := range codes {
		if g.callsHost[f] || mi.hostInTables && len(g.sites[f]) > 0 {
			g.direct[f] = append(g.direct[f], mi.allocators...)
		}
	}
	return g, nil
}

// readCalls records f's direct calls, calls of imports, indirect call
// sites and ref.func operands.
func (g *callGraph) readCalls(f uint32, code []byte, mi *moduleInfo, classOf func(uint32) uint32, take func(uint32)) error {
	n := uint32(len(g.direct))
	importedFuncs := mi.importedFuncs
	r := reader{b: code}
	groups := r.u32()
	for i := uint32(0); i < groups && r.err == nil; i++ {
		r.u32()
		r.valType()
	}
	for !r.done() {
		start := r.i
		op := r.byte()
		switch {
		case op == opCall || op == 0x12: // call, return_call
			callee := r.u32()
			if callee >= importedFuncs+n && r.err == nil {
				return fmt.Errorf("opcode 0x%02x at %d: function index %d out of range", op, start, callee)
			}
			if callee >= importedFuncs {
				g.direct[f] = append(g.direct[f], callee-importedFuncs)
			} else {
				g.callsHost[f] = true
			}
		case op == opGlobalGet || op == opGlobalSet:
			if idx := r.u32(); idx >= mi.globals && r.err == nil {
				return fmt.Errorf("opcode 0x%02x at %d: global index %d out of range", op, start, idx)
			}
		case op == opCallIndirect || op == opReturnCallIndirect:
			t := r.u32()
			r.u32()
			g.sites[f] = append(g.sites[f], classOf(t))
		case op == opCallRef || op == opReturnCallRef:
			r.u32()
			g.sites[f] = append(g.sites[f], g.anyClass())
		case op == opRefFunc:
			idx := r.u32()
			if idx >= importedFuncs+n && r.err == nil {
				return fmt.Errorf("opcode 0x%02x at %d: function index %d out of range", op, start, idx)
			}
			take(idx)
			mi.hostInTables = mi.hostInTables || idx < importedFuncs
		default:
			if err := r.immediates(op); err != nil {
				return err
			}
		}
		if r.err != nil {
			return fmt.Errorf("opcode 0x%02x at %d: %w", op, start, r.err)
		}
	}
	return nil
}

// loopFirst says whether a function body reaches a loop header on every
// call before it can call anything or leave: nothing but blocks and plain
// instructions (no branch, call or return) before its first loop, as Go's
// compiler starts most functions.
func loopFirst(code []byte) bool {
	r := reader{b: code}
	for groups := r.u32(); groups > 0 && r.err == nil; groups-- {
		r.u32()
		r.valType()
	}
	for !r.done() {
		op := r.byte()
		switch {
		case op == opLoop:
			return r.err == nil
		case op == opBlock || op == 0x01 || op == 0x1a || op == 0x1b, // block, nop, drop, select
			op >= 0x20 && op <= 0x24, // locals, globals
			op >= 0x28 && op <= 0x3e, // loads and stores (a trap ends the call)
			op >= 0x41 && op <= 0xc4: // constants, numeric
			if err := r.immediates(op); err != nil {
				return false
			}
		default:
			return false
		}
	}
	return false
}

// read takes from one section what the call graph needs.
func (mi *moduleInfo) read(s section) error {
	r := reader{b: s.body}
	switch s.id {
	case secType:
		n := r.u32()
		classes := map[string]uint32{}
		for i := uint32(0); i < n && r.err == nil; i++ {
			if r.byte() != 0x60 {
				// A GC-proposal type (rec, sub, struct, array): its
				// subtyping decides what call_indirect accepts; treat
				// every indirect call as reaching any function.
				mi.gcTypes = true
				return nil
			}
			// The key is the decoded signature, not its bytes: a count
			// may be padded (LEB128), and call_indirect matches types
			// by structure whatever their encoding.
			var sig []byte
			for range 2 { // parameters, then results
				k := r.u32()
				sig = binary.LittleEndian.AppendUint32(sig, k)
				for ; k > 0 && r.err == nil; k-- {
					if c := r.peek(); c == 0x63 || c == 0x64 {
						// A typed reference: its heap type may be a type
						// index (s33, also paddable) whose subtyping
						// decides; classes are not known.
						mi.gcTypes = true
						return nil
					}
					sig = append(sig, r.byte())
				}
			}
			c, ok := classes[string(sig)]
			if !ok {
				c = uint32(len(classes))
				classes[string(sig)] = c
			}
			mi.typeClass = append(mi.typeClass, c)
		}
		mi.classes = uint32(len(classes))
	case secImport:
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.name()
			r.name()
			switch kind := r.byte(); kind {
			case kindFunc:
				r.u32()
				mi.importedFuncs++
			case 0x01: // a table: the outside may have filled it
				r.refType()
				r.limits()
				mi.outsideTables = true
			case 0x02:
				r.limits()
			case kindGlobal:
				// A funcref global from outside may hold one of the
				// module's exports.
				if !numeric(r.peek()) {
					mi.outsideTables = true
				}
				r.valType()
				r.byte()
				mi.globals++
				mi.refGlobal = append(mi.refGlobal, false) // outsideTables already
			case 0x04:
				r.byte()
				r.u32()
			default:
				return fmt.Errorf("interrupt: import %d: unknown kind 0x%02x", i, kind)
			}
		}
	case secFunc:
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			mi.funcTypes = append(mi.funcTypes, r.u32())
		}
	case secExport:
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			name := r.bytes(int(r.u32()))
			kind := r.byte()
			idx := r.u32()
			switch kind {
			case kindFunc:
				mi.exported = append(mi.exported, idx)
				for _, a := range allocatorExports {
					if string(name) == a && idx >= mi.importedFuncs {
						mi.allocators = append(mi.allocators, idx-mi.importedFuncs)
					}
				}
			case 0x01: // a table: the host may fill it
				mi.outsideTables = true
			case kindGlobal: // a mutable funcref global: the host may set it
				if idx < uint32(len(mi.refGlobal)) && mi.refGlobal[idx] {
					mi.outsideTables = true
				}
			}
		}
	case secGlobal:
		n := r.u32()
		mi.globals += n
		for i := uint32(0); i < n && r.err == nil; i++ {
			t := r.peek()
			r.valType()
			mutable := r.byte() == 1
			mi.refGlobal = append(mi.refGlobal, mutable && !numeric(t))
			mi.constExpr(&r, !numeric(t))
		}
	case secElem:
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			flags := r.u32()
			if flags > 7 {
				return fmt.Errorf("interrupt: element segment %d: unknown flags %d", i, flags)
			}
			if flags&2 != 0 && flags&1 == 0 { // an explicit table index
				r.u32()
			}
			if flags&1 == 0 { // active: an offset
				mi.constExpr(&r, false)
			}
			if flags&3 != 0 { // an element kind (0x00) or a reference type
				if flags&4 == 0 {
					r.byte()
				} else {
					r.refType()
				}
			}
			k := r.u32()
			for j := uint32(0); j < k && r.err == nil; j++ {
				if flags&4 == 0 {
					mi.refs = append(mi.refs, r.u32())
				} else {
					mi.constExpr(&r, true)
				}
			}
		}
	default:
		return nil
	}
	if r.err != nil {
		return fmt.Errorf("interrupt: section %d: %w", s.id, r.err)
	}
	return nil
}

// constExpr reads a constant expression up to its end, taking its ref.func
// operands; a global.get in one whose value is a reference (refValued) may
// carry a function from outside.
func (mi *moduleInfo) constExpr(r *reader, refValued bool) {
	for !r.done() {
		op := r.byte()
		switch op {
		case opEnd:
			return
		case opRefFunc:
			mi.refs = append(mi.refs, r.u32())
		case opGlobalGet:
			mi.globalRefs = append(mi.globalRefs, r.u32())
			mi.outsideTables = mi.outsideTables || refValued
		default:
			if err := r.immediates(op); err != nil {
				r.err = err
				return
			}
		}
	}
	if r.err == nil {
		r.err = errors.New("constant expression without end")
	}
}

// numeric says whether valType byte t is a number or vector type.
func numeric(t byte) bool { return t >= 0x7b && t <= 0x7f }

func (r *reader) peek() byte {
	if r.i >= len(r.b) {
		return 0
	}
	return r.b[r.i]
}
