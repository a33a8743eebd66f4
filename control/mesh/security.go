package mesh

import (
	"fmt"
	"sort"

	"github.com/weftmesh/weft/proxy/config"
)

// This file compiles mTLS and Policy resources (only when Options.TrustDomain
// is set, i.e. the control plane runs a CA).
//
//   - A sidecar's inbound listener gets tls.mode from the Policy resources
//     naming its service (strict, permissive, disable → disabled; default
//     permissive), and, when any of them has allow rules, an authz block
//     with default deny and one allow rule per Policy listing the SPIFFE IDs
//     of the allowed services' sidecars.
//   - A cluster of endpoints fronted by sidecars gets tls {mode: mtls,
//     server_ids: the service's sidecars' SPIFFE IDs}, unless the service's
//     policy mode is disable; endpoints without a sidecar stay plaintext
//     (compile.go targets, sidecarAt), and a set mixing both is split in
//     two clusters.

// policiesFor lists the Policy resources naming service k.
func (n *nodeCompiler) policiesFor(k Key) []*Resource {
	var out []*Resource
	for _, r := range n.m.List(KindPolicy) {
		for _, s := range r.Policy().Services {
			if ServiceRef(r.Namespace, s) == k {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// mtlsMode is service k's inbound mode as a listener tls.mode.
func (n *nodeCompiler) mtlsMode(k Key) string {
	for _, r := range n.policiesFor(k) {
		switch r.Policy().MTLS {
		case "strict":
			return "strict"
		case "permissive":
			return "permissive"
		case "disable":
			return "disabled"
		}
	}
	return "permissive"
}

// frontIDs are the SPIFFE IDs of the sidecars fronting k with an inbound
// listener (sorted, unique).
func (n *nodeCompiler) frontIDs(k Key, inboundOnly bool) []string {
	seen := map[string]bool{}
	var ids []string
	for _, r := range n.m.List(KindSidecar) {
		s := r.Sidecar()
		if s.Service == "" || ServiceRef(r.Namespace, s.Service) != k || (inboundOnly && s.Inbound == "") {
			continue
		}
		if id := WorkloadID(n.o.TrustDomain, r); !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// secureInbound sets the inbound listener's tls and authz for service self.
func (n *nodeCompiler) secureInbound(in *config.Listener, self Key) {
	if n.o.TrustDomain == "" {
		return
	}
	mode := "permissive"
	if self != (Key{}) {
		mode = n.mtlsMode(self)
	}
	in.TLS = &config.ListenerTLS{Mode: mode}
	if self == (Key{}) {
		return
	}
	var rules []config.AuthzRule
	for _, r := range n.policiesFor(self) {
		p := r.Policy()
		for i, a := range p.Allow {
			rule := config.AuthzRule{Name: fmt.Sprintf("%s.%s.allow%d", r.Name, r.Namespace, i), Action: "allow"}
			for _, from := range a.From {
				fk := ServiceRef(r.Namespace, from)
				ids := n.frontIDs(fk, false)
				if len(ids) == 0 {
					ids = []string{"spiffe://" + n.o.TrustDomain + "/ns/" + fk.Namespace + "/sa/" + fk.Name}
				}
				rule.Principals = append(rule.Principals, ids...)
			}
			rules = append(rules, rule)
		}
	}
	if len(rules) > 0 {
		in.Authz = &config.Authz{Default: "deny", Rules: rules}
	}
}

// Warnings are problems that do not refuse a change but that the operator
// should see: a Policy demanding strict mTLS for a service whose endpoint
// has no sidecar (callers reach it in plaintext, and nothing there
// enforces the policy). Compile's result does not depend on them.
func Warnings(m *Mesh) Errors {
	var out Errors
	for _, r := range m.List(KindPolicy) {
		p := r.Policy()
		if p.MTLS != "strict" {
			continue
		}
		for i, name := range p.Services {
			k := ServiceRef(r.Namespace, name)
			sr := m.Get(k)
			if sr == nil || sr.Service() == nil {
				continue
			}
			svc := sr.Service()
			check := func(where string, eps []Endpoint) {
				for _, e := range eps {
					if sidecarAt(m, k, e) {
						continue
					}
					out = append(out, Error{Key: r.Key(), Field: fmt.Sprintf("spec.services[%d]", i), File: r.File, Line: r.Line,
						Reason: fmt.Sprintf("mtls is strict, but %s endpoint %s has no sidecar: callers reach it in plaintext and this policy is not enforced there (put a sidecar in front of it, or declare sidecar: true on the endpoint if one listens there)", where, e.Address)})
				}
			}
			check("service "+k.Namespace+"/"+k.Name, svc.Endpoints)
			for _, v := range svc.Versions {
				check("service "+k.Namespace+"/"+k.Name+" version "+v.Name, v.Endpoints)
			}
		}
	}
	return out
}
