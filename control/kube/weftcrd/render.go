package weftcrd

import (
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"
)

// FileName is the file of a kind's CRD in deploy/kubernetes/crds.
func (k Kind) FileName() string { return Group + "_" + k.Plural + ".yaml" }

// Render writes a kind's CRD as the YAML kubectl applies, with a header
// saying where it comes from.
func (k Kind) Render(docs map[string]string) ([]byte, error) {
	b, err := json.Marshal(k.CRD(docs))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "status") // the API server's to fill
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	y, err := yaml.Marshal(m)
	if err != nil {
		return nil, err
	}
	head := fmt.Sprintf("# The %s resource of weft (%s/%s), generated from control/mesh.%s by\n"+
		"# go test ./control/kube/weftcrd -run TestCRDFiles -update; do not edit.\n", k.Mesh, Group, Version, k.Spec.Name())
	return append([]byte(head), y...), nil
}
