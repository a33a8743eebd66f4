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
//   - A cluster of a service fronted by sidecars with an inbound listener
//     gets tls {mode: mtls, server_ids: those sidecars' SPIFFE IDs}, unless
//     the service's policy mode is disable.

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

// secureCluster sets a service cluster's tls when its instances are
// sidecars that accept mTLS.
func (n *nodeCompiler) secureCluster(c *config.Cluster, k Key) {
	if n.o.TrustDomain == "" || n.mtlsMode(k) == "disabled" {
		return
	}
	ids := n.frontIDs(k, true)
	if len(ids) == 0 {
		return // no sidecar in front of it: plaintext to the instances
	}
	c.TLS = &config.ClusterTLS{Mode: "mtls", ServerIDs: ids}
}
