package mesh

import (
	"fmt"
	"sort"
	"strings"
)

// Mesh is a whole set of resources, indexed by key. It is not safe for
// concurrent mutation; the store builds a new one per change.
type Mesh struct {
	byKey map[Key]*Resource
}

// New indexes rs; a later resource with the same key replaces an earlier one.
func New(rs []*Resource) *Mesh {
	m := &Mesh{byKey: make(map[Key]*Resource, len(rs))}
	for _, r := range rs {
		m.byKey[r.Key()] = r
	}
	return m
}

// Get returns the resource with key k, or nil.
func (m *Mesh) Get(k Key) *Resource { return m.byKey[k] }

// Len is the number of resources.
func (m *Mesh) Len() int { return len(m.byKey) }

// List returns the resources of kind k ("" = every kind), in key order.
func (m *Mesh) List(k Kind) []*Resource {
	var out []*Resource
	for key, r := range m.byKey {
		if k == "" || key.Kind == k {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key().Less(out[j].Key()) })
	return out
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
