package mesh

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Mesh is a whole set of resources, indexed by key. It never changes once
// made (the store builds a new one per change), so any number of
// goroutines may read it.
type Mesh struct {
	byKey map[Key]*Resource
	// all is every resource in key order, byKind those of each kind:
	// compiling reads the lists of a kind once per sidecar, so they are
	// sorted once here rather than on every List.
	all    []*Resource
	byKind map[Kind][]*Resource
}

// New indexes rs; a later resource with the same key replaces an earlier one.
func New(rs []*Resource) *Mesh {
	m := &Mesh{byKey: make(map[Key]*Resource, len(rs)), byKind: map[Kind][]*Resource{}}
	for _, r := range rs {
		m.byKey[r.Key()] = r
	}
	m.all = make([]*Resource, 0, len(m.byKey))
	for _, r := range m.byKey {
		m.all = append(m.all, r)
	}
	sort.Slice(m.all, func(i, j int) bool { return m.all[i].Key().Less(m.all[j].Key()) })
	for _, r := range m.all {
		m.byKind[r.Kind] = append(m.byKind[r.Kind], r)
	}
	return m
}

// Get returns the resource with key k, or nil.
func (m *Mesh) Get(k Key) *Resource { return m.byKey[k] }

// Len is the number of resources.
func (m *Mesh) Len() int { return len(m.byKey) }

// List returns the resources of kind k ("" = every kind), in key order.
// The slice is the caller's.
func (m *Mesh) List(k Kind) []*Resource {
	if k == "" {
		return slices.Clone(m.all)
	}
	return slices.Clone(m.byKind[k])
}

// ServiceRef resolves a reference written in namespace ns: "NAME" or
// "NAMESPACE/NAME".
func ServiceRef(ns, ref string) Key {
	if i := strings.IndexByte(ref, '/'); i >= 0 {
		return Key{Kind: KindService, Namespace: ref[:i], Name: ref[i+1:]}
	}
	return Key{Kind: KindService, Namespace: ns, Name: ref}
}

// ClusterName is the proxy cluster holding every instance of a service.
func ClusterName(svc Key) string { return svc.Name + "." + svc.Namespace }

// VersionClusterName is the proxy cluster holding one version's instances.
func VersionClusterName(svc Key, version string) string {
	return ClusterName(svc) + "." + version
}

// ServiceOfCluster maps a cluster name made by the compiler back to its
// service ("NAMESPACE/NAME") and version ("" for the whole service). ok is
// false for other clusters (the inbound local app). The halves of a cluster
// split by transport (CLUSTER~mtls, CLUSTER~plain) map to the cluster's.
func ServiceOfCluster(cluster string) (service, version string, ok bool) {
	cluster, _, _ = strings.Cut(cluster, "~") // the ~mtls or ~plain half
	parts := strings.Split(cluster, ".")
	switch len(parts) {
	case 2:
		return parts[1] + "/" + parts[0], "", true
	case 3:
		return parts[1] + "/" + parts[0], parts[2], true
	}
	return "", "", false
}

// filterName is the proxy filter name of a Filter resource.
func filterName(k Key) string { return fmt.Sprintf("%s.%s", k.Name, k.Namespace) }
