package sdk

import "unsafe"

// A Go guest (GOOS=wasip1) has no per-call-site cache for type assertions
// to an interface: every `f.(RequestHeadersFilter)` is a lookup in the
// runtime's itab hash table (~50 ns under wazero), and a stream made nine
// of them (eight to find the callbacks its filter implements, one to call
// the callback). A filterKind does them once per filter type: a plugin's
// streams nearly always get filters of one type.

// filterKind is what the SDK knows of one filter type.
type filterKind struct {
	typ  unsafe.Pointer // the type word of the filter's interface value
	bits uint32         // callbacksOf the type
	// statelessType is set when the type is a StatelessFilter (whether a
	// value is stateless is still asked of each value).
	statelessType bool
	// tabs are the type's itabs for the callback interfaces, indexed by
	// callback bit number (nil: the type does not implement it).
	tabs [8]unsafe.Pointer
}

// callback bit numbers (callbackRequestHeaders == 1<<cbRequestHeaders ...).
const (
	cbRequestHeaders = iota
	cbRequestBody
	cbRequestTrailers
	cbResponseHeaders
	cbResponseBody
	cbResponseTrailers
	cbLog
	cbDone
)

// ifaceWords is the layout of a Go interface value: its type word (the
// dynamic type for an empty interface, the itab for another) and its data
// word.
type ifaceWords struct {
	tab, data unsafe.Pointer
}

func words(p unsafe.Pointer) *ifaceWords { return (*ifaceWords)(p) }

// kindOf returns f's kind (nil for a nil filter), from r's cache.
func (r *rootContext) kindOf(f HTTPFilter) *filterKind {
	if f == nil {
		return nil
	}
	typ := words(unsafe.Pointer(&f)).tab
	if k := r.kind; k != nil && k.typ == typ {
		return k
	}
	for _, k := range r.kinds {
		if k.typ == typ {
			r.kind = k
			return k
		}
	}
	k := newKind(f)
	r.kinds = append(r.kinds, k)
	r.kind = k
	return k
}

func newKind(f HTTPFilter) *filterKind {
	k := &filterKind{typ: words(unsafe.Pointer(&f)).tab, bits: callbacksOf(f)}
	_, k.statelessType = f.(StatelessFilter)
	if i, ok := f.(RequestHeadersFilter); ok {
		k.tabs[cbRequestHeaders] = words(unsafe.Pointer(&i)).tab
	}
	if i, ok := f.(RequestBodyFilter); ok {
		k.tabs[cbRequestBody] = words(unsafe.Pointer(&i)).tab
	}
	if i, ok := f.(RequestTrailersFilter); ok {
		k.tabs[cbRequestTrailers] = words(unsafe.Pointer(&i)).tab
	}
	if i, ok := f.(ResponseHeadersFilter); ok {
		k.tabs[cbResponseHeaders] = words(unsafe.Pointer(&i)).tab
	}
	if i, ok := f.(ResponseBodyFilter); ok {
		k.tabs[cbResponseBody] = words(unsafe.Pointer(&i)).tab
	}
	if i, ok := f.(ResponseTrailersFilter); ok {
		k.tabs[cbResponseTrailers] = words(unsafe.Pointer(&i)).tab
	}
	if i, ok := f.(LogFilter); ok {
		k.tabs[cbLog] = words(unsafe.Pointer(&i)).tab
	}
	if i, ok := f.(DoneFilter); ok {
		k.tabs[cbDone] = words(unsafe.Pointer(&i)).tab
	}
	return k
}

// as returns f as the callback interface I whose itab for f's type is tab
// (from f's kind): what the assertion f.(I) returns, without its lookup.
// tab must be non-nil and f of the kind's type.
func as[I any](tab unsafe.Pointer, f HTTPFilter) (i I) {
	w := words(unsafe.Pointer(&i))
	w.tab = tab
	w.data = words(unsafe.Pointer(&f)).data
	return i
}
