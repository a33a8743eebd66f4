package httpheader

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func order(h *fasthttp.RequestHeader) string {
	var b strings.Builder
	for k, v := range h.All() {
		fmt.Fprintf(&b, "%s=%s;", k, v)
	}
	return b.String()
}

func TestDelKeepsOrderOfRepeatedFields(t *testing.T) {
	var h fasthttp.RequestHeader
	h.SetMethod("GET")
	h.SetRequestURI("/")
	h.Add("X-Remove", "1")
	h.Add("X-Multi", "a")
	h.Add("Other", "o")
	h.Add("X-Multi", "b")
	DelRequest(&h, []byte("X-Remove"))
	got := order(&h)
	if !strings.Contains(got, "X-Multi=a;Other=o;X-Multi=b;") || strings.Contains(got, "X-Remove") {
		t.Fatalf("order after delete: %s", got)
	}
}

func TestDelWithoutRepeatsAndAbsent(t *testing.T) {
	var h fasthttp.RequestHeader
	h.Add("A", "1")
	h.Add("B", "2")
	h.Add("C", "3")
	DelRequest(&h, []byte("Missing"))
	DelRequest(&h, []byte("A"))
	if h.Peek("A") != nil || string(h.Peek("B")) != "2" || string(h.Peek("C")) != "3" {
		t.Fatalf("after delete: %s", order(&h))
	}
}

func TestSetRepeatedAndSingle(t *testing.T) {
	var h fasthttp.ResponseHeader
	h.Add("X-Multi", "a")
	h.Add("Keep", "1")
	h.Add("X-Multi", "b")
	h.Add("Keep", "2")
	SetResponse(&h, []byte("X-Multi"), []byte("z"))
	var got []string
	for k, v := range h.All() {
		got = append(got, string(k)+"="+string(v))
	}
	s := strings.Join(got, ";")
	if !strings.Contains(s, "Keep=1;Keep=2;X-Multi=z") || strings.Count(s, "X-Multi") != 1 {
		t.Fatalf("after set: %s", s)
	}
	SetResponse(&h, []byte("Keep2"), []byte("new"))
	if string(h.Peek("Keep2")) != "new" {
		t.Fatal("set of a new field")
	}
}

func TestDelNoAllocWhenAbsent(t *testing.T) {
	var h fasthttp.RequestHeader
	h.Add("A", "1")
	key := []byte("Connection")
	if n := testing.AllocsPerRun(100, func() { DelRequest(&h, key) }); n != 0 {
		t.Fatalf("%v allocs deleting an absent field", n)
	}
}

func TestDelNoAllocWithoutRepeats(t *testing.T) {
	var h fasthttp.RequestHeader
	h.Add("A", "1")
	h.Add("B", "1")
	key, val := []byte("X-Wasm"), []byte("v")
	if n := testing.AllocsPerRun(100, func() {
		h.AddBytesKV(key, val)
		DelRequest(&h, key)
	}); n != 0 {
		t.Fatalf("%v allocs deleting a present, unrepeated field", n)
	}
}
