package weftcrd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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

// IsManifest reports whether data's first YAML document is a custom
// resource of weft's group (apiVersion weftmesh.io/...).
func IsManifest(data []byte) bool {
	var head struct {
		APIVersion string `yaml:"apiVersion"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&head); err != nil {
		return false
	}
	return strings.HasPrefix(head.APIVersion, Group+"/")
}

// DecodeManifests reads weft's custom resources from YAML documents as
// kubectl applies them (apiVersion, kind, metadata, spec), with Decode's
// strictness: each problem is "FILE:LINE: Kind namespace/name: spec.field:
// reason" at the document's line. A namespace left out is "default".
func DecodeManifests(file string, data []byte) ([]*mesh.Resource, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []*mesh.Resource
	var errs []error
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode {
			continue
		}
		line := n.Content[0].Line
		var doc struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Metadata   struct {
				Name      string `yaml:"name"`
				Namespace string `yaml:"namespace"`
			} `yaml:"metadata"`
			Spec map[string]any `yaml:"spec"`
		}
		if err := n.Decode(&doc); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", file, line, err))
			continue
		}
		if doc.APIVersion != Group+"/"+Version {
			errs = append(errs, fmt.Errorf("%s:%d: apiVersion %q: want %s/%s", file, line, doc.APIVersion, Group, Version))
			continue
		}
		var kind *Kind
		for i := range Kinds {
			if string(Kinds[i].Mesh) == doc.Kind {
				kind = &Kinds[i]
			}
		}
		if kind == nil {
			errs = append(errs, fmt.Errorf("%s:%d: kind %q is not one of weft's custom resources (Filter, Policy, Sidecar)", file, line, doc.Kind))
			continue
		}
		ns := doc.Metadata.Namespace
		if ns == "" {
			ns = mesh.DefaultNamespace
		}
		r, err := Decode(*kind, ns, doc.Metadata.Name, doc.Spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", file, line, err))
			continue
		}
		r.File, r.Line = file, line
		out = append(out, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
