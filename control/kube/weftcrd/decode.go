package weftcrd

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/weftmesh/weft/control/mesh"
)

// Decode reads a custom resource's spec as the weft resource of its kind
// in namespace/name, with the same strict decoding as `weft validate`: an
// unknown field or a wrong type is an error naming the field
// ("spec.module.sha256: ...").
func Decode(k Kind, namespace, name string, spec map[string]any) (*mesh.Resource, error) {
	doc := map[string]any{"kind": string(k.Mesh), "name": name, "namespace": namespace, "spec": spec}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", k.Mesh, namespace, name, err)
	}
	rs, err := mesh.Decode(decodeSource, b)
	if err != nil {
		return nil, errors.New(dropSourceLines(err.Error()))
	}
	if len(rs) != 1 {
		return nil, fmt.Errorf("%s %s/%s: the object holds %d resources", k.Mesh, namespace, name, len(rs))
	}
	return rs[0], nil
}

const decodeSource = "object"

// Lines of the generated document mean nothing to the object's author.
var sourceLineRE = regexp.MustCompile(`(?m)^` + decodeSource + `:\d+: `)

func dropSourceLines(s string) string { return sourceLineRE.ReplaceAllString(s, "") }

// Check validates r as part of the mesh m (replacing the resource of the
// same key) exactly as the store will: whole-mesh validation and every
// sidecar's compiled config. It returns the problems r causes, or nil. A
// problem reported against another resource (a sidecar whose compiled
// config r breaks) is r's when the mesh without r compiles.
func Check(r *mesh.Resource, m *mesh.Mesh, o mesh.Options) error {
	var without []*mesh.Resource
	for _, x := range m.List("") {
		if x.Key() != r.Key() {
			without = append(without, x)
		}
	}
	_, err := mesh.Compile(mesh.New(append(without[:len(without):len(without)], r)), o)
	if err == nil {
		return nil
	}
	var es mesh.Errors
	if !errors.As(err, &es) {
		return err
	}
	var own mesh.Errors
	for _, e := range es {
		if e.Key == r.Key() {
			own = append(own, e)
		}
	}
	if len(own) > 0 {
		return own
	}
	if _, err := mesh.Compile(mesh.New(without), o); err != nil {
		return nil // the mesh is broken without r too: not r's doing
	}
	return fmt.Errorf("%s breaks other resources: %w", r.Key(), es)
}

// Message is an error as a status condition message: one problem per line,
// without the "Kind namespace/name: " every line repeats.
func Message(r mesh.Key, err error) string {
	return strings.ReplaceAll(err.Error(), r.String()+": ", "")
}
