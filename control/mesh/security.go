package mesh

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/weftmesh/weft/proxy/config"
)

// This file compiles mTLS and Policy resources (only when Options.TrustDomain
// is set, i.e. the control plane runs a CA).
//
//   - A sidecar's inbound listener gets tls.mode from the Policy resources
//     naming its service (strict, permissive, disable → disabled; default
//     permissive), and an authz block from their rules: every deny rule,
//     then every allow rule, default deny when there is an allow rule;
//     "from" becomes the SPIFFE IDs of the calling services' sidecars.
//     Dry-run policies go, with the enforced ones, into authz.dry_run.
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
	var enforced, all []*Resource
	for _, r := range n.policiesFor(self) {
		all = append(all, r)
		if !r.Policy().DryRun {
			enforced = append(enforced, r)
		}
	}
	in.Authz = n.authz(enforced)
	if len(enforced) < len(all) {
		// The dry run is what the listener would do with every policy
		// enforced, checked on what the enforced ones allow.
		dry := n.authz(all)
		if in.Authz == nil {
			in.Authz = &config.Authz{Default: "allow"}
		}
		in.Authz.DryRun = &config.DryRunAuthz{Default: "allow"}
		if dry != nil {
			in.Authz.DryRun.Default, in.Authz.DryRun.Rules = dry.Default, dry.Rules
		}
	}
}

// authz compiles policies into one listener authz: deny rules first, then
// allow rules, default deny when there is any allow rule. nil when the
// policies have no rules.
func (n *nodeCompiler) authz(policies []*Resource) *config.Authz {
	var deny, allow []config.AuthzRule
	for _, r := range policies {
		p := r.Policy()
		for i := range p.Deny {
			deny = append(deny, n.authzRule(r, "deny", i, &p.Deny[i]))
		}
		for i := range p.Allow {
			allow = append(allow, n.authzRule(r, "allow", i, &p.Allow[i]))
		}
	}
	if len(deny)+len(allow) == 0 {
		return nil
	}
	a := &config.Authz{Default: "allow", Rules: append(deny, allow...)}
	if len(allow) > 0 {
		a.Default = "deny"
	}
	return a
}

// authzRule compiles one access rule of Policy r; from names the calling
// services' sidecars by their SPIFFE IDs.
func (n *nodeCompiler) authzRule(r *Resource, action string, i int, a *AccessRule) config.AuthzRule {
	name := a.Name
	if name == "" {
		name = action + strconv.Itoa(i)
	}
	rule := config.AuthzRule{Name: r.Name + "." + r.Namespace + "." + name, Action: action,
		RequestPrincipals: a.RequestPrincipals, Paths: a.Paths, Methods: a.Methods, Headers: a.Headers, Ports: a.Ports}
	for _, from := range a.From {
		fk := ServiceRef(r.Namespace, from)
		ids := n.frontIDs(fk, false)
		if len(ids) == 0 {
			ids = []string{"spiffe://" + n.o.TrustDomain + "/ns/" + fk.Namespace + "/sa/" + fk.Name}
		}
		rule.Principals = append(rule.Principals, ids...)
	}
	rule.Principals = append(rule.Principals, a.Principals...)
	return rule
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
			if (svc.DNS != nil || hasDNSVersion(svc)) && !hasInboundSidecar(m, k) {
				out = append(out, Error{Key: r.Key(), Field: fmt.Sprintf("spec.services[%d]", i), File: r.File, Line: r.Line,
					Reason: fmt.Sprintf("mtls is strict, but service %s/%s is resolved by DNS and no Sidecar with an inbound fronts it: callers reach it in plaintext and this policy is not enforced there", k.Namespace, k.Name)})
			}
		}
	}
	return out
}

func hasDNSVersion(svc *ServiceSpec) bool {
	for _, v := range svc.Versions {
		if v.DNS != nil {
			return true
		}
	}
	return false
}

// hasInboundSidecar reports whether a Sidecar with an inbound listener
// fronts service k.
func hasInboundSidecar(m *Mesh, k Key) bool {
	for _, r := range m.List(KindSidecar) {
		if s := r.Sidecar(); s.Service != "" && s.Inbound != "" && ServiceRef(r.Namespace, s.Service) == k {
			return true
		}
	}
	return false
}
