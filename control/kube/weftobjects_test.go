package kube

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/weftmesh/weft/control/kube/weftcrd"
	"github.com/weftmesh/weft/control/mesh"
)

func weftObj(kind mesh.Kind, ns, name string, gen int64, spec map[string]any) weftObject {
	k, _ := weftcrd.KindOf(kind)
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetGeneration(gen)
	return weftObject{kind: k, obj: u}
}

// An invalid weft object is refused naming the field and never reaches
// the mesh; its last accepted version keeps serving; valid ones go in.
func TestAdmitWeftObjects(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	o := mesh.Options{HasModule: func(d string) bool { return d == digest }, ModuleURL: func(d string) string { return "http://c/" + d }}
	svc := &mesh.Resource{Kind: mesh.KindService, Namespace: "shop", Name: "cart", Spec: &mesh.ServiceSpec{Endpoints: []mesh.Endpoint{{Address: "127.0.0.1:80"}}}}
	good := weftObj(mesh.KindFilter, "shop", "authz", 2, map[string]any{"module": map[string]any{"sha256": digest}, "apply": map[string]any{"all": true}})
	badField := weftObj(mesh.KindFilter, "shop", "tagger", 5, map[string]any{"module": map[string]any{"sha256": digest}, "failure_policy": "sometimes"})
	badRef := weftObj(mesh.KindPolicy, "shop", "strict", 1, map[string]any{"services": []any{"nope"}, "mtls": "strict"})
	sidecar := weftObj(mesh.KindSidecar, "shop", "cart-1", 1, map[string]any{"service": "cart", "outbound": "127.0.0.1:15001"})
	lastGood := &mesh.Resource{Kind: mesh.KindFilter, Namespace: "shop", Name: "tagger", Spec: &mesh.FilterSpec{Module: mesh.ModuleRef{SHA256: digest}}}
	stored := func(k mesh.Key) *mesh.Resource {
		if k == lastGood.Key() {
			return lastGood
		}
		return nil
	}
	// A rule for a Service that a weft TrafficRule (another source's)
	// already routes is left out; one for another Service goes in.
	svc2 := &mesh.Resource{Kind: mesh.KindService, Namespace: "shop", Name: "orders", Spec: &mesh.ServiceSpec{Endpoints: []mesh.Endpoint{{Address: "127.0.0.1:81"}}}}
	native := &mesh.Resource{Kind: mesh.KindTrafficRule, Namespace: "shop", Name: "native", Spec: &mesh.TrafficRuleSpec{Service: "cart",
		Routes: []mesh.RuleRoute{{Match: mesh.Match{Prefix: "/"}, Split: []mesh.Split{{Service: "cart", Weight: 100}}}}}}
	rule := func(svc string) *mesh.Resource {
		return &mesh.Resource{Kind: mesh.KindTrafficRule, Namespace: "shop", Name: svc, Spec: &mesh.TrafficRuleSpec{Service: svc,
			Routes: []mesh.RuleRoute{{Name: "a", Match: mesh.Match{Path: "/a"}, Split: []mesh.Split{{Service: svc, Weight: 100}}}}}}
	}
	a := admit([]weftObject{good, badField, badRef, sidecar}, []*mesh.Resource{rule("cart"), rule("orders")}, []*mesh.Resource{svc, svc2, native}, stored, o)
	puts, verdicts := a.Puts, a.Verdicts
	if len(a.RefusedRules) != 1 || !strings.Contains(a.RefusedRules[rule("cart").Key()], "conflicting rules") {
		t.Fatalf("refused rules: %v", a.RefusedRules)
	}
	svc = &mesh.Resource{Kind: mesh.KindService, Namespace: "shop", Name: "cart", Spec: svc.Spec}
	others := []*mesh.Resource{svc, svc2, native}
	var keys []string
	for _, r := range puts {
		keys = append(keys, r.Key().String())
	}
	if strings.Join(keys, ",") != "Filter shop/authz,Filter shop/tagger,Sidecar shop/cart-1,TrafficRule shop/orders" || puts[1] != lastGood {
		t.Fatalf("admitted %v", keys)
	}
	if _, err := mesh.Compile(mesh.New(append(puts, others...)), o); err != nil {
		t.Fatalf("the admitted mesh does not compile: %v", err)
	}
	want := []struct{ status, reason, msg string }{
		{"True", "Accepted", "valid and in force"},
		{"False", "Invalid", "spec.failure_policy: "},
		{"False", "Invalid", `spec.services[0]: service "nope" does not exist`},
		{"True", "Accepted", "valid"},
	}
	for i, v := range verdicts {
		c := v.condition()
		if string(c.Status) != want[i].status || c.Reason != want[i].reason || !strings.Contains(c.Message, want[i].msg) ||
			c.ObservedGeneration != v.obj.obj.GetGeneration() {
			t.Errorf("%s: condition %+v, want %+v", v.obj.key(), c, want[i])
		}
	}
	if c := verdicts[1].condition(); !strings.HasSuffix(c.Message, "the last accepted version keeps serving") {
		t.Errorf("refused object with a last good version: %q", c.Message)
	}
	if c := verdicts[2].condition(); !strings.HasSuffix(c.Message, "the object is not in force") {
		t.Errorf("refused new object: %q", c.Message)
	}
}
