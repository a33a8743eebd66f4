package sdk

import (
	"errors"

	"github.com/weftmesh/weft/sdk/internal/abi"
)

// CallForeignFunction calls a function the host offers by name
// (proxy_call_foreign_function) with args in the encoding that function
// defines, and returns its result. A host that does not offer name answers
// StatusNotFound (Envoy, Weft) or StatusUnimplemented (older hosts): check
// with IsForeignFunctionMissing and fall back to doing the work in the guest.
//
// Weft's functions are listed in docs/wasm.md ("Foreign functions"), e.g.
// "weft.verify_signature".
func CallForeignFunction(name string, args []byte) ([]byte, error) {
	b, st := abi.CallForeignFunction(name, args)
	return b, statusErr(st)
}

// IsForeignFunctionMissing reports whether err, from CallForeignFunction,
// means the host does not offer the function at all (as opposed to
// refusing these arguments).
func IsForeignFunctionMissing(err error) bool {
	return errors.Is(err, StatusNotFound) || errors.Is(err, StatusUnimplemented)
}
