package weftcrd

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/control/mesh"
)

var digest = strings.Repeat("ab", 32)

func meshOf(t *testing.T, docs string) *mesh.Mesh {
	t.Helper()
	rs, err := mesh.Decode("mesh.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	return mesh.New(rs)
}

const base = `kind: Service
name: cart
namespace: shop
spec: {endpoints: [{address: "127.0.0.1:8080"}]}
---
kind: Sidecar
name: cart-1
namespace: shop
spec: {service: cart, outbound: "127.0.0.1:15001"}
`

var opts = mesh.Options{
	HasModule: func(d string) bool { return d == digest },
	ModuleURL: func(d string) string { return "http://control/v1/modules/" + d },
}

// A custom resource reads as the weft resource with the same strict
// decoding, and is checked against the whole mesh as the store will check
// it; every error names the field, without the generated document's lines.
func TestDecodeAndCheck(t *testing.T) {
	filter, _ := KindOf(mesh.KindFilter)
	r, err := Decode(filter, "shop", "authz", map[string]any{
		"module": map[string]any{"sha256": digest},
		"config": map[string]any{"issuer": "x"},
		"apply":  map[string]any{"services": []any{"cart"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Key() != (mesh.Key{Kind: mesh.KindFilter, Namespace: "shop", Name: "authz"}) || string(r.Filter().Config) != `{"issuer":"x"}` {
		t.Fatalf("decoded %+v %+v", r, r.Filter())
	}
	if err := Check(r, meshOf(t, base), opts); err != nil {
		t.Fatalf("a valid filter: %v", err)
	}

	_, err = Decode(filter, "shop", "authz", map[string]any{"module": map[string]any{"sha265": digest}})
	if err == nil || !strings.Contains(err.Error(), `Filter shop/authz: spec.module.sha265: unknown field "sha265"; known fields here: sha256,`) ||
		strings.Contains(err.Error(), "object:") {
		t.Fatalf("a typo: %v", err)
	}

	for _, c := range []struct {
		kind mesh.Kind
		spec map[string]any
		want string
	}{
		{mesh.KindFilter, map[string]any{"module": map[string]any{"sha256": strings.Repeat("cd", 32)}}, "spec.module.sha256: "},
		{mesh.KindFilter, map[string]any{"module": map[string]any{"sha256": digest}, "failure_policy": "sometimes"}, "spec.failure_policy: "},
		{mesh.KindPolicy, map[string]any{"services": []any{"nope"}}, `spec.services[0]: service "nope" does not exist`},
		{mesh.KindSidecar, map[string]any{"service": "cart", "outbound": "not an address"}, "spec.outbound: "},
	} {
		k, _ := KindOf(c.kind)
		r, err := Decode(k, "shop", "x", c.spec)
		if err != nil {
			t.Fatalf("%v: %v", c.spec, err)
		}
		err = Check(r, meshOf(t, base), opts)
		if err == nil || !strings.Contains(Message(r.Key(), err), c.want) {
			t.Errorf("%s %v: %v, want an error saying %q", c.kind, c.spec, err, c.want)
		}
		if err != nil && strings.Contains(Message(r.Key(), err), r.Key().String()) {
			t.Errorf("message repeats the key: %q", Message(r.Key(), err))
		}
	}
}
