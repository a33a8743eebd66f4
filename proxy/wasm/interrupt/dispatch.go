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
var Dispatched = []string{
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
	secType    = 1
	secFunc    = 3
	kindFunc   = 0x00
	opBlock    = 0x02
	opBrTable  = 0x0e
	opReturn   = 0x0f
	opCall     = 0x10
	opLocalGet = 0x20
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

// newDispatcher builds weft_dispatch for the module's sections.
func newDispatcher(secs []section) (d dispatcher, ok bool) {
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
	n := uint32(len(Dispatched))
	b := []byte{0} // no locals
	for i := uint32(0); i <= n; i++ {
		b = append(b, opBlock, blockEmpty) // the default's block, then one per selector
	}
	b = append(b, opLocalGet, 0, opBrTable)
	b = appendU32(b, n)
	for i := uint32(0); i <= n; i++ { // selector i → block i from the inside; else the default
		b = appendU32(b, i)
	}
	any := false
	for _, name := range Dispatched {
		b = append(b, opEnd)
		idx, found := exports[name]
		if !found || idx < importedFuncs || int(idx-importedFuncs) >= len(funcs) || int(funcs[idx-importedFuncs]) >= len(types) {
			b = append(b, opUnreach)
			continue
		}
		ft := types[funcs[idx-importedFuncs]]
		if !Dispatchable(ft.params, ft.results) {
			b = append(b, opUnreach)
			continue
		}
		any = true
		for p := range ft.params {
			b = append(b, opLocalGet, byte(p+1))
		}
		b = appendU32(append(b, opCall), idx)
		if len(ft.results) == 0 {
			b = append(b, opI32Const, 0)
		}
		b = append(b, opReturn)
	}
	b = append(b, opEnd, opUnreach, opEnd) // the default: unreachable
	if !any {
		return d, false
	}
	d.body = appendU32(nil, uint32(len(b)))
	d.body = append(d.body, b...)
	return d, true
}
