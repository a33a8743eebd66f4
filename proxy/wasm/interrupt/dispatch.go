package interrupt

// DispatchName is the export name of the callback dispatcher Instrument
// adds: weft_dispatch(selector, a, b, c i32) i32 calls the export
// Dispatched[selector] with its first arguments (as many as it takes) and
// returns its result (0 when it has none). A host that makes every stream
// callback through it enters the guest through one function: wazero gives
// each exported function its own call engine (a 10 KiB native stack, 1 KiB
// of execution context), so seven different callbacks per request touch
// seven of each, cold in cache between a request's callbacks; through the
// dispatcher they share one.
const DispatchName = "weft_dispatch"

// Dispatched are the exports weft_dispatch calls, by selector. An export
// that is missing, imported, or not Dispatchable gets a selector that
// traps (unreachable): the host calls it directly instead.
var Dispatched = [...]string{
	"proxy_on_context_create",
	"proxy_on_request_headers",
	"proxy_on_request_body",
	"proxy_on_request_trailers",
	"proxy_on_response_headers",
	"proxy_on_response_body",
	"proxy_on_response_trailers",
	"proxy_on_log",
	"proxy_on_done",
	"proxy_on_delete",
}

// Selectors of the exports the combined selectors run (their index in
// Dispatched, which is also what they set the stage global to).
const (
	selCreate          = 0
	selRequestHeaders  = 1
	selResponseHeaders = StageResponseHeaders
	selResponseBody    = StageResponseBody
	selLog             = 7
	selDone            = 8
	selDelete          = 9
)

// The stage global's values while SelResponseHeadersBody runs the
// response headers and the response body callback.
const (
	StageResponseHeaders = 4
	StageResponseBody    = 5
)

// Combined selectors: one entry into the guest that runs several stream
// callbacks of one context in sequence, each exactly as its own selector
// would. Before each callback the dispatcher sets the stage global
// (StageName) to that callback's selector, so a host that sees the call
// fail knows which callback trapped, and a watchdog that reads the stage
// can give each callback its own deadline.
const (
	// SelCreateRequestHeaders(context_id, root_id, headers<<1 | end_of_stream):
	// proxy_on_context_create(context_id, root_id), then, unless the host
	// set the stop global meanwhile (it clears it and returns 0 then),
	// proxy_on_request_headers(context_id, headers, end_of_stream),
	// returning its action. Built only when both exports are
	// Dispatchable; otherwise the selector traps.
	SelCreateRequestHeaders = 10
	// SelEnd(context_id, mask, _) runs, in order, proxy_on_log if mask
	// has EndLog, proxy_on_done if EndDone, proxy_on_delete if EndDelete,
	// each with context_id. When proxy_on_done returns false it stops
	// there and returns 0 (on_delete not called: the host decides); it
	// returns 1 otherwise. A bit whose export is missing or not
	// Dispatchable traps (the host must not set it).
	SelEnd = 11
	// SelResponseHeadersBody(context_id, headers, body_size<<1 | end_of_stream):
	// proxy_on_response_headers(context_id, headers, 0) (end_of_stream
	// false: a body follows), then, only if it returned 0 (Continue) and
	// the host did not set the stop global meanwhile,
	// proxy_on_response_body(context_id, body_size, end_of_stream),
	// returning the action of the last callback made (0 when stopped
	// after the headers). The stage global tells which that was. The
	// dispatcher does not clear the stop global: the host does. Built only
	// when both exports are Dispatchable; otherwise the selector traps.
	SelResponseHeadersBody = 12
)

// The combined selectors follow Dispatched's (a compile-time check).
var (
	_ [SelCreateRequestHeaders - len(Dispatched)]struct{}
	_ [len(Dispatched) - SelCreateRequestHeaders]struct{}
)

// Bits of SelEnd's mask.
const (
	EndLog = 1 << iota
	EndDone
	EndDelete
)

// StageName is the export name of the stage global, a mutable i32 only
// the guest writes: the selector of the callback a combined selector runs
// now (or ran last).
const StageName = "weft_stage"

// StopName is the export name of the stop global, a mutable i32: the host
// sets it to 1 while SelCreateRequestHeaders runs the context create to
// have the call return after it (the dispatcher clears it). Only the host
// sets and only the guest reads it, so a watchdog reading the stage from
// another thread never meets the host's write.
const StopName = "weft_stop"

// Dispatchable is the rule for a function weft_dispatch can call: at most
// three parameters and at most one result, all i32 (valType bytes).
func Dispatchable(params, results []byte) bool {
	if len(params) > 3 || len(results) > 1 {
		return false
	}
	for _, t := range params {
		if t != valI32 {
			return false
		}
	}
	return len(results) == 0 || results[0] == valI32
}

const (
	valI32     = 0x7f
	opIf       = 0x04
	opDrop     = 0x1a
	opI32Eqz   = 0x45
	opI32And   = 0x71
	opI32ShrU  = 0x76
	secType    = 1
	secFunc    = 3
	kindFunc   = 0x00
	opBlock    = 0x02
	opBrTable  = 0x0e
	opReturn   = 0x0f
	opCall     = 0x10
	opLocalGet = 0x20
	opLocalSet = 0x21
	opI32Const = 0x41
	opUnreach  = 0x00
	blockEmpty = 0x40
)

type funcType struct{ params, results []byte }

// dispatcher is what Instrument adds for weft_dispatch: a new type, the
// function's entry in the function section, its body in the code
// section and its export. ok is false when the module's sections do not
// allow it (the module is then rewritten without it).
type dispatcher struct {
	typeIdx, funcIdx uint32
	typeEntry, body  []byte
}

// newDispatcher builds weft_dispatch for the module's sections; stage and
// stop are the indices of the stage and stop globals.
func newDispatcher(secs []section, stage, stop uint32) (d dispatcher, ok bool) {
	var types []funcType
	var funcs []uint32
	var importedFuncs uint32
	exports := map[string]uint32{}
	haveType, haveFunc, haveCode := false, false, false
	for _, s := range secs {
		r := reader{b: s.body}
		switch s.id {
		case secType:
			haveType = true
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				if r.byte() != 0x60 {
					return d, false // a GC-proposal type: leave it alone
				}
				var ft funcType
				ft.params = r.bytes(int(r.u32()))
				ft.results = r.bytes(int(r.u32()))
				types = append(types, ft)
			}
		case secImport:
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				r.name()
				r.name()
				switch r.byte() {
				case 0x00:
					r.u32()
					importedFuncs++
				case 0x01:
					r.refType()
					r.limits()
				case 0x02:
					r.limits()
				case kindGlobal:
					r.valType()
					r.byte()
				case 0x04:
					r.byte()
					r.u32()
				default:
					return d, false
				}
			}
		case secFunc:
			haveFunc = true
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				funcs = append(funcs, r.u32())
			}
		case secExport:
			n := r.u32()
			for i := uint32(0); i < n && r.err == nil; i++ {
				name := string(r.bytes(int(r.u32())))
				kind := r.byte()
				idx := r.u32()
				if kind == kindFunc {
					exports[name] = idx
				}
			}
		case secCode:
			haveCode = true
		}
		if r.err != nil {
			return d, false
		}
	}
	if !haveType || !haveFunc || !haveCode {
		return d, false
	}
	d.typeIdx = uint32(len(types))
	d.funcIdx = importedFuncs + uint32(len(funcs))
	d.typeEntry = []byte{0x60, 4, valI32, valI32, valI32, valI32, 1, valI32}
	// callee is the export name's function index and type, ok when the
	// dispatcher can call it.
	callee := func(name string) (idx uint32, ft funcType, ok bool) {
		idx, found := exports[name]
		if !found || idx < importedFuncs || int(idx-importedFuncs) >= len(funcs) || int(funcs[idx-importedFuncs]) >= len(types) {
			return 0, ft, false
		}
		ft = types[funcs[idx-importedFuncs]]
		return idx, ft, Dispatchable(ft.params, ft.results)
	}
	// call appends a call of the export with args (code pushing each
	// parameter, as many as it takes; i32.const 0 past them) and leaves
	// its result, or 0 without one, on the stack (0 when keep is false:
	// nothing is left).
	call := func(b []byte, idx uint32, ft funcType, keep bool, args ...[]byte) []byte {
		for p := range ft.params {
			if p < len(args) {
				b = append(b, args[p]...)
			} else {
				b = append(b, opI32Const, 0)
			}
		}
		b = appendU32(append(b, opCall), idx)
		switch {
		case keep && len(ft.results) == 0:
			b = append(b, opI32Const, 0)
		case !keep && len(ft.results) == 1:
			b = append(b, opDrop)
		}
		return b
	}
	setStage := func(b []byte, sel int) []byte {
		b = appendS32(append(b, opI32Const), int32(sel))
		return appendU32(append(b, opGlobalSet), stage)
	}
	local := func(i byte) []byte { return []byte{opLocalGet, i} }
	n := uint32(len(Dispatched))
	cases := make([][]byte, 0, n+2)
	any := false
	for _, name := range Dispatched {
		idx, ft, ok := callee(name)
		if !ok {
			cases = append(cases, []byte{opUnreach})
			continue
		}
		any = true
		cases = append(cases, append(call(nil, idx, ft, true, local(1), local(2), local(3)), opReturn))
	}
	// SelCreateRequestHeaders.
	var c []byte
	cIdx, cFt, cOK := callee(Dispatched[selCreate])
	hIdx, hFt, hOK := callee(Dispatched[selRequestHeaders])
	// Local 3 packs a size and end_of_stream as size<<1 | eos: the two
	// arguments of a headers or body callback.
	sizeArg := []byte{opLocalGet, 3, opI32Const, 1, opI32ShrU}
	eosArg := []byte{opLocalGet, 3, opI32Const, 1, opI32And}
	if cOK && hOK {
		c = setStage(c, selCreate)
		c = call(c, cIdx, cFt, false, local(1), local(2))
		// if (stop) { stop = 0; return 0 }
		c = appendU32(append(c, opGlobalGet), stop)
		c = append(c, opIf, blockEmpty, opI32Const, 0)
		c = appendU32(append(c, opGlobalSet), stop)
		c = append(c, opI32Const, 0, opReturn, opEnd)
		c = setStage(c, selRequestHeaders)
		c = call(c, hIdx, hFt, true, local(1),
			sizeArg, eosArg)
		c = append(c, opReturn)
	} else {
		c = []byte{opUnreach}
	}
	cases = append(cases, c)
	// SelEnd.
	c = nil
	for _, e := range []struct {
		sel, bit int
	}{{selLog, EndLog}, {selDone, EndDone}, {selDelete, EndDelete}} {
		c = append(c, opLocalGet, 2, opI32Const, byte(e.bit), opI32And, opIf, blockEmpty)
		idx, ft, ok := callee(Dispatched[e.sel])
		switch {
		case !ok:
			c = append(c, opUnreach)
		case e.sel == selDone:
			c = setStage(c, e.sel)
			if len(ft.results) == 0 { // no answer: done
				c = call(c, idx, ft, false, local(1))
			} else {
				// if (!on_done(id)) return 0
				c = call(c, idx, ft, true, local(1))
				c = append(c, opI32Eqz, opIf, blockEmpty, opI32Const, 0, opReturn, opEnd)
			}
		default:
			c = setStage(c, e.sel)
			c = call(c, idx, ft, false, local(1))
		}
		c = append(c, opEnd)
	}
	cases = append(cases, append(c, opI32Const, 1, opReturn))
	// SelResponseHeadersBody. Local 4 holds the headers' action.
	c = nil
	rhIdx, rhFt, rhOK := callee(Dispatched[selResponseHeaders])
	rbIdx, rbFt, rbOK := callee(Dispatched[selResponseBody])
	if rhOK && rbOK {
		c = setStage(c, selResponseHeaders)
		c = call(c, rhIdx, rhFt, true, local(1), local(2), []byte{opI32Const, 0})
		c = append(c, opLocalSet, 4)
		// if (action) return action
		c = append(c, opLocalGet, 4, opIf, blockEmpty, opLocalGet, 4, opReturn, opEnd)
		// if (stop) return 0
		c = appendU32(append(c, opGlobalGet), stop)
		c = append(c, opIf, blockEmpty, opI32Const, 0, opReturn, opEnd)
		c = setStage(c, selResponseBody)
		c = call(c, rbIdx, rbFt, true, local(1),
			sizeArg, eosArg)
		c = append(c, opReturn)
	} else {
		c = []byte{opUnreach}
	}
	cases = append(cases, c)

	total := uint32(len(cases))
	b := []byte{1, 1, valI32} // one i32 local (SelResponseHeadersBody's action)
	for i := uint32(0); i <= total; i++ {
		b = append(b, opBlock, blockEmpty) // the default's block, then one per selector
	}
	b = append(b, opLocalGet, 0, opBrTable)
	b = appendU32(b, total)
	for i := uint32(0); i <= total; i++ { // selector i → block i from the inside; else the default
		b = appendU32(b, i)
	}
	for _, c := range cases {
		b = append(b, opEnd)
		b = append(b, c...)
	}
	b = append(b, opEnd, opUnreach, opEnd) // the default: unreachable
	if !any {
		return d, false
	}
	d.body = appendU32(nil, uint32(len(b)))
	d.body = append(d.body, b...)
	return d, true
}
