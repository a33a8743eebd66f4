package wasm

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// Envoy's declare_property foreign function: a guest declares a property
// it will set with proxy_set_property, with a type, a life span and
// whether it is read-only (settable once). Its argument is Envoy's
// DeclarePropertyArguments message (source/extensions/common/wasm/ext/
// declare_property.proto):
//
//	string name = 1; bool readonly = 2; WasmType type = 3;
//	bytes schema = 4; LifeSpan span = 5;
//
// Weft keeps the subset a filter can observe through the ABI: the types
// bytes and string (a value is the bytes set either way), and readonly. The
// span is accepted and not used: a value lives as long as the store
// proxy_set_property writes (the stream or connection, or the VM's root
// store). The declaration belongs to the root context of the plugin whose
// callback makes it, in that VM, as Envoy keeps it on the root context
// that proxy_set_property consults.

// Envoy's WasmType values weft accepts.
const (
	propertyTypeBytes  = 0
	propertyTypeString = 1
)

// maxPropertySpan is Envoy's last LifeSpan (DownstreamConnection).
const maxPropertySpan = 2

// propertyDecl is one declared property.
type propertyDecl struct {
	readonly bool
}

// foreignDeclareProperty is "declare_property". BadArgument: the message
// does not parse, has no name, a type other than bytes or string, an
// unknown span, or the name is already declared (Envoy keeps the first).
func foreignDeclareProperty(v *vm, args []byte) ([]byte, uint32) {
	name, d, ok := parseDeclareProperty(args)
	if !ok {
		return nil, statusBadArgument
	}
	r := v.root(v.p)
	if r == nil {
		return nil, statusBadArgument
	}
	if _, dup := r.props[name]; dup {
		return nil, statusBadArgument
	}
	if r.props == nil {
		r.props = make(map[string]propertyDecl)
	}
	r.props[name] = d
	return nil, statusOK
}

// parseDeclareProperty decodes a DeclarePropertyArguments message.
func parseDeclareProperty(b []byte) (name string, d propertyDecl, ok bool) {
	var typ, span uint64
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", d, false
		}
		b = b[n:]
		switch {
		case num == 1 && wt == protowire.BytesType:
			s, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", d, false
			}
			name, b = string(s), b[n:]
		case (num == 2 || num == 3 || num == 5) && wt == protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return "", d, false
			}
			b = b[n:]
			switch num {
			case 2:
				d.readonly = x != 0
			case 3:
				typ = x
			case 5:
				span = x
			}
		default: // schema (4) and fields a later Envoy adds
			n := protowire.ConsumeFieldValue(num, wt, b)
			if n < 0 {
				return "", d, false
			}
			b = b[n:]
		}
	}
	if name == "" || (typ != propertyTypeBytes && typ != propertyTypeString) || span > maxPropertySpan {
		return "", propertyDecl{}, false
	}
	return name, d, true
}

// settable reports whether proxy_set_property may write key now: not when
// the current plugin declared it readonly and the store already holds it.
// The caller holds v.mu.
func (v *vm) settable(key []byte) bool {
	r := v.root(v.p)
	if r == nil || r.props == nil {
		return true
	}
	d, ok := r.props[string(key)]
	if !ok || !d.readonly {
		return true
	}
	if f := v.cur; f != nil {
		_, set := f.s.Attributes[string(key)]
		return !set
	}
	_, set := v.rootAttrs[string(key)]
	return !set
}
