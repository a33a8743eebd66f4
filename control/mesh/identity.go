package mesh

// ServiceAccountOf is the service account of a Sidecar resource: its
// service_account, else the name of the service it fronts, else its node
// id.
func ServiceAccountOf(r *Resource) string {
	s := r.Sidecar()
	switch {
	case s == nil:
		return ""
	case s.ServiceAccount != "":
		return s.ServiceAccount
	case s.Service != "":
		return ServiceRef(r.Namespace, s.Service).Name
	}
	return r.Name
}

// SidecarOf finds the Sidecar resource of a node id (node ids are unique
// across namespaces), or nil.
func (m *Mesh) SidecarOf(node string) *Resource {
	for _, r := range m.List(KindSidecar) {
		if r.Name == node {
			return r
		}
	}
	return nil
}

// WorkloadID is the SPIFFE ID of a Sidecar resource in trustDomain:
// spiffe://TD/ns/NAMESPACE/sa/SERVICE-ACCOUNT.
func WorkloadID(trustDomain string, r *Resource) string {
	return "spiffe://" + trustDomain + "/ns/" + r.Namespace + "/sa/" + ServiceAccountOf(r)
}

// validSegment reports whether s is a SPIFFE ID path segment.
func validSegment(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
