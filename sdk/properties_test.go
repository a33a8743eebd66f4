package sdk_test

import (
	"bytes"
	"testing"

	"github.com/weftmesh/weft/sdk"
	"github.com/weftmesh/weft/sdk/sdktest"
)

// TestPropertyQuery: a query reads every property in one
// weft.get_properties call where the host has it, one by one where it does
// not, with the same values: found ones (an empty one too) as they are, a
// missing one nil.
func TestPropertyQuery(t *testing.T) {
	sdk.Register(func([]byte) (sdk.Plugin, error) { return nopPlugin{}, nil })
	q := sdk.NewPropertyQuery([]string{"plugin_name"}, []string{"no", "such"}, []string{"request", "size"}, []string{"empty"})
	for _, batch := range []bool{true, false} {
		sdk.ResetBatchProperties()
		h := sdktest.New(t, sdktest.Options{NoBatchProperties: !batch, Properties: map[string][]byte{
			"plugin_name": []byte("tele"), "request.size": {7, 0, 0, 0, 0, 0, 0, 0}, "empty": {},
		}})
		vals := make([][]byte, q.Len())
		for range 2 { // the second time the SDK knows the host
			if err := q.Read(vals); err != nil {
				t.Fatalf("batch %v: %v", batch, err)
			}
			if string(vals[0]) != "tele" || vals[1] != nil || !bytes.Equal(vals[2], []byte{7, 0, 0, 0, 0, 0, 0, 0}) ||
				vals[3] == nil || len(vals[3]) != 0 {
				t.Errorf("batch %v: values %q", batch, vals)
			}
		}
		want := 0
		if batch {
			want = 2
		} else {
			want = 1 // then the SDK stops asking
		}
		if n := h.ForeignCalls("weft.get_properties"); n != want {
			t.Errorf("batch %v: %d weft.get_properties calls, want %d", batch, n, want)
		}
		if err := q.Read(make([][]byte, 1)); err == nil {
			t.Errorf("batch %v: a short vals slice was accepted", batch)
		}
	}
	sdk.ResetBatchProperties()
}
