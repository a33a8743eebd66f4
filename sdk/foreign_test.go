package sdk_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/sdktest"
)

type nopPlugin struct{}

func (nopPlugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return struct{}{} }

func TestCallForeignFunction(t *testing.T) {
	sdk.Register(func([]byte) (sdk.Plugin, error) { return nopPlugin{}, nil })
	h := sdktest.New(t, sdktest.Options{ForeignFunctions: map[string]func([]byte) ([]byte, error){
		"test.reverse": func(args []byte) ([]byte, error) {
			if len(args) == 0 {
				return nil, sdk.StatusBadArgument
			}
			out := bytes.Clone(args)
			for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
				out[i], out[j] = out[j], out[i]
			}
			return out, nil
		},
		"test.broken": func([]byte) ([]byte, error) { return nil, errors.New("boom") },
	}})

	out, err := sdk.CallForeignFunction("test.reverse", []byte("abc"))
	if err != nil || string(out) != "cba" {
		t.Fatalf("test.reverse: %q, %v", out, err)
	}
	_, err = sdk.CallForeignFunction("test.reverse", nil)
	if !errors.Is(err, sdk.StatusBadArgument) || sdk.IsForeignFunctionMissing(err) {
		t.Errorf("bad arguments: %v (missing: %v)", err, sdk.IsForeignFunctionMissing(err))
	}
	if _, err = sdk.CallForeignFunction("test.broken", []byte("x")); !errors.Is(err, sdk.StatusInternalFailure) {
		t.Errorf("failing function: %v", err)
	}
	_, err = sdk.CallForeignFunction("weft.verify_signature", []byte("x"))
	if !errors.Is(err, sdk.StatusNotFound) || !sdk.IsForeignFunctionMissing(err) {
		t.Errorf("absent function: %v (missing: %v)", err, sdk.IsForeignFunctionMissing(err))
	}
	if !sdk.IsForeignFunctionMissing(sdk.StatusUnimplemented) || sdk.IsForeignFunctionMissing(nil) {
		t.Error("IsForeignFunctionMissing: Unimplemented is missing, nil is not")
	}
	if n := h.ForeignCalls("test.reverse"); n != 2 {
		t.Errorf("ForeignCalls(test.reverse) = %d, want 2", n)
	}
	if n := h.ForeignCalls("weft.verify_signature"); n != 1 {
		t.Errorf("ForeignCalls(weft.verify_signature) = %d, want 1", n)
	}
}
