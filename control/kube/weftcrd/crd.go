// Package weftcrd owns weft's own Kubernetes resources: the
// CustomResourceDefinitions of group weftmesh.io (Filter, Policy, Sidecar,
// whose spec is exactly the spec of the weft resource of that kind, field
// names as in weft's YAML), their OpenAPI v3 schemas generated from the Go
// types in control/mesh, and the reading of an object into a mesh.Resource
// with the same strict decoding and validation as `weft validate`, errors
// naming the field.
//
// It must not watch or write anything: the kube source lists the objects,
// and writes their status conditions.
package weftcrd

import (
	"fmt"
	"reflect"
	"strings"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/weftmesh/weft/control/mesh"
)

// Group and Version of weft's resources.
const (
	Group   = "weftmesh.io"
	Version = "v1alpha1"
)

// Kind is one weft resource kind served as a custom resource.
type Kind struct {
	Mesh     mesh.Kind
	Plural   string
	Singular string
	Short    []string
	Spec     reflect.Type
	// Doc describes the kind (kubectl explain).
	Doc string
}

// Kinds are weft's custom resource kinds, in the order they are listed.
var Kinds = []Kind{
	{Mesh: mesh.KindFilter, Plural: "filters", Singular: "filter", Short: []string{"wf"}, Spec: reflect.TypeOf(mesh.FilterSpec{}),
		Doc: "A Wasm filter known to the weft control plane: its module (by sha256 digest in the module registry, or an OCI image), its configuration, and the sidecars and listeners it runs on. An HTTPRoute runs it on a route with an ExtensionRef filter (group weftmesh.io, kind Filter)."},
	{Mesh: mesh.KindPolicy, Plural: "policies", Singular: "policy", Short: []string{"wp"}, Spec: reflect.TypeOf(mesh.PolicySpec{}),
		Doc: "The mTLS mode of services' inbound listeners and which callers may reach which of their endpoints."},
	{Mesh: mesh.KindSidecar, Plural: "sidecars", Singular: "sidecar", Short: []string{"ws"}, Spec: reflect.TypeOf(mesh.SidecarSpec{}),
		Doc: "One weft sidecar (a node; the object's name is the node id): the service it fronts and its listeners."},
}

// KindOf returns the custom resource kind of a mesh kind.
func KindOf(k mesh.Kind) (Kind, bool) {
	for _, x := range Kinds {
		if x.Mesh == k {
			return x, true
		}
	}
	return Kind{}, false
}

// Resource is the API resource of a kind, for dynamic clients.
func (k Kind) Resource() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: Group, Version: Version, Resource: k.Plural}
}

// CRD is the CustomResourceDefinition of a kind. docs describe fields by
// "GoType.Field" (see Schema); nil leaves fields undescribed.
func (k Kind) CRD(docs map[string]string) *apiextv1.CustomResourceDefinition {
	spec := Schema(k.Spec, docs)
	spec.Description = "The " + string(k.Mesh) + " spec, as in weft's YAML (docs/control-plane.md)."
	cond := apiextv1.JSONSchemaProps{Type: "object", Required: []string{"type", "status", "reason", "message", "lastTransitionTime"},
		Properties: map[string]apiextv1.JSONSchemaProps{
			"type":               {Type: "string"},
			"status":             {Type: "string", Enum: []apiextv1.JSON{{Raw: []byte(`"True"`)}, {Raw: []byte(`"False"`)}, {Raw: []byte(`"Unknown"`)}}},
			"observedGeneration": {Type: "integer", Format: "int64", Minimum: ptr(0.0)},
			"lastTransitionTime": {Type: "string", Format: "date-time"},
			"reason":             {Type: "string"},
			"message":            {Type: "string"},
		}}
	status := apiextv1.JSONSchemaProps{Type: "object", Description: "What the weft control plane made of the object.",
		Properties: map[string]apiextv1.JSONSchemaProps{
			"observedGeneration": {Type: "integer", Format: "int64", Description: "The generation the conditions describe."},
			"conditions": {Type: "array", Items: &apiextv1.JSONSchemaPropsOrArray{Schema: &cond},
				XListType: ptr("map"), XListMapKeys: []string{"type"},
				Description: "Accepted: True when the object is valid and in force; False (reason Invalid) with the validation errors, each naming the field, when it is refused: the last valid version (if any) keeps serving."},
		}}
	return &apiextv1.CustomResourceDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{Name: k.Plural + "." + Group, Labels: map[string]string{"app.kubernetes.io/part-of": "weft"}},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: Group,
			Names: apiextv1.CustomResourceDefinitionNames{Plural: k.Plural, Singular: k.Singular, Kind: string(k.Mesh),
				ListKind: string(k.Mesh) + "List", ShortNames: k.Short, Categories: []string{"weft"}},
			Scope: apiextv1.NamespaceScoped,
			Versions: []apiextv1.CustomResourceDefinitionVersion{{
				Name: Version, Served: true, Storage: true,
				Subresources: &apiextv1.CustomResourceSubresources{Status: &apiextv1.CustomResourceSubresourceStatus{}},
				AdditionalPrinterColumns: []apiextv1.CustomResourceColumnDefinition{
					{Name: "Accepted", Type: "string", JSONPath: `.status.conditions[?(@.type=="Accepted")].status`},
					{Name: "Reason", Type: "string", JSONPath: `.status.conditions[?(@.type=="Accepted")].reason`},
					{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
				},
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{
					Type: "object", Description: k.Doc, Required: []string{"spec"},
					Properties: map[string]apiextv1.JSONSchemaProps{
						"apiVersion": {Type: "string"},
						"kind":       {Type: "string"},
						"metadata":   {Type: "object"},
						"spec":       spec,
						"status":     status,
					},
				}},
			}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// Schema is the structural OpenAPI v3 schema of a spec type, from its json
// tags: a field without omitempty is required; config.Duration is a
// duration string; config.RawConfig (a filter's configuration) is any JSON
// value. docs["Type.Field"] (Go names, e.g. "FilterSpec.Module") become
// descriptions.
func Schema(t reflect.Type, docs map[string]string) apiextv1.JSONSchemaProps {
	return schemaOf(t, docs, map[reflect.Type]bool{})
}

func schemaOf(t reflect.Type, docs map[string]string, active map[reflect.Type]bool) apiextv1.JSONSchemaProps {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.PkgPath() + "." + t.Name() {
	case "github.com/weftmesh/weft/proxy/config.Duration":
		return apiextv1.JSONSchemaProps{Type: "string", Pattern: `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
	case "github.com/weftmesh/weft/proxy/config.RawConfig":
		return apiextv1.JSONSchemaProps{XPreserveUnknownFields: ptr(true)}
	}
	switch t.Kind() {
	case reflect.Interface:
		// Any JSON value (metadata values): kept as written, checked by
		// weft's validator behind the CRD.
		return apiextv1.JSONSchemaProps{XPreserveUnknownFields: ptr(true)}
	case reflect.String:
		return apiextv1.JSONSchemaProps{Type: "string"}
	case reflect.Bool:
		return apiextv1.JSONSchemaProps{Type: "boolean"}
	case reflect.Int, reflect.Int64:
		return apiextv1.JSONSchemaProps{Type: "integer", Format: "int64"}
	case reflect.Int32:
		return apiextv1.JSONSchemaProps{Type: "integer", Format: "int32"}
	case reflect.Float64, reflect.Float32:
		return apiextv1.JSONSchemaProps{Type: "number"}
	case reflect.Slice:
		it := schemaOf(t.Elem(), docs, active)
		return apiextv1.JSONSchemaProps{Type: "array", Items: &apiextv1.JSONSchemaPropsOrArray{Schema: &it}}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			panic(fmt.Sprintf("weftcrd: map key %s: only string keys", t.Key()))
		}
		v := schemaOf(t.Elem(), docs, active)
		return apiextv1.JSONSchemaProps{Type: "object", AdditionalProperties: &apiextv1.JSONSchemaPropsOrBool{Allows: true, Schema: &v}}
	case reflect.Struct:
		if active[t] {
			panic(fmt.Sprintf("weftcrd: %s is recursive", t))
		}
		active[t] = true
		defer delete(active, t)
		s := apiextv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextv1.JSONSchemaProps{}}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			p := schemaOf(f.Type, docs, active)
			p.Description = docs[t.Name()+"."+f.Name]
			s.Properties[name] = p
			if !strings.Contains(opts, "omitempty") {
				s.Required = append(s.Required, name)
			}
		}
		return s
	}
	panic(fmt.Sprintf("weftcrd: no schema for %s", t))
}
