package kube

import (
	"fmt"
	"net"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/weftmesh/weft/control/mesh"
)

// Discovery translates Services and their EndpointSlices
// (discovery.k8s.io/v1) into mesh Services in the same namespace:
//
//   - a Service's first TCP port is the mesh Service of the same name;
//     each other TCP port is the mesh Service NAME-PORTNAME (NAME-PORT when
//     unnamed), reached at Host NAME.NAMESPACE[.svc[.cluster.local]]:PORT;
//   - the instances are the endpoints of every slice labelled
//     kubernetes.io/service-name=NAME, at the slice port of the same name
//     (the target port, resolved by the EndpointSlice controller), with
//     their zone;
//   - only ready endpoints are balanced over; when none is, the serving
//     ones that are terminating are (as kube-proxy does); with
//     publishNotReadyAddresses, every endpoint is;
//   - a headless Service is balanced over its endpoints like any other; an
//     ExternalName Service resolves its name by DNS at each port.
//
// A port with no usable endpoint makes no mesh Service (a mesh Service
// needs instances): callers get no route to it until one is ready.
func Discovery() Translator {
	return Translator{Name: "discovery", Translate: translateDiscovery}
}

// ServiceName is the mesh Service a Kubernetes Service's port (by its
// number, as a backendRef names it) translates to, in the Service's
// namespace; false when the port is not one of the Service's TCP ports.
func ServiceName(svc *corev1.Service, port int32) (string, bool) {
	for i, p := range tcpPorts(svc) {
		if p.Port == port {
			return portServiceName(svc, p, i == 0), true
		}
	}
	return "", false
}

// Origin is how an object is named as the origin of the mesh resources
// translated from it ("Service default/web").
func Origin(kind, namespace, name string) string { return kind + " " + namespace + "/" + name }

func tcpPorts(svc *corev1.Service) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, p := range svc.Spec.Ports {
		if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
			out = append(out, p)
		}
	}
	return out
}

func portServiceName(svc *corev1.Service, p corev1.ServicePort, primary bool) string {
	switch {
	case primary:
		return svc.Name
	case p.Name != "":
		return svc.Name + "-" + p.Name
	}
	return svc.Name + "-" + strconv.Itoa(int(p.Port))
}

// portMeshName is the mesh Service name of svc's TCP port p (the i-th):
// the first port always has the Service's own name; another port has none
// ("") when its name is taken by another Service or longer than 63
// characters. Discovery and the Gateway API translator both use it, so a
// backendRef resolves to exactly the Services discovery made.
func portMeshName(svc *corev1.Service, p corev1.ServicePort, i int, taken func(name string) bool) string {
	name := portServiceName(svc, p, i == 0)
	if i > 0 && (taken(name) || len(name) > 63) {
		return ""
	}
	return name
}

func translateDiscovery(c *Cache) (Output, error) {
	svcs, err := c.Services.List(labels.Everything())
	if err != nil {
		return Output{}, err
	}
	slices, err := c.EndpointSlices.List(labels.Everything())
	if err != nil {
		return Output{}, err
	}
	type nsName struct{ ns, name string }
	bySvc := map[nsName][]*discoveryv1.EndpointSlice{}
	for _, sl := range slices {
		if n := sl.Labels[discoveryv1.LabelServiceName]; n != "" {
			k := nsName{sl.Namespace, n}
			bySvc[k] = append(bySvc[k], sl)
		}
	}
	names := map[nsName]bool{}
	for _, s := range svcs {
		names[nsName{s.Namespace, s.Name}] = true
	}
	var out Output
	for _, svc := range svcs {
		origin := Origin("Service", svc.Namespace, svc.Name)
		sl := bySvc[nsName{svc.Namespace, svc.Name}]
		sort.Slice(sl, func(i, j int) bool { return sl[i].Name < sl[j].Name })
		for i, p := range tcpPorts(svc) {
			name := portMeshName(svc, p, i, func(n string) bool { return names[nsName{svc.Namespace, n}] })
			if name == "" {
				out.Warnings = append(out.Warnings, fmt.Sprintf("%s: port %d (%q): its mesh Service name %q is taken by another Service or longer than 63 characters; the port is not in the mesh", origin, p.Port, p.Name, portServiceName(svc, p, false)))
				continue
			}
			spec := &mesh.ServiceSpec{}
			if svc.Spec.Type == corev1.ServiceTypeExternalName {
				if svc.Spec.ExternalName == "" {
					continue
				}
				spec.DNS = &mesh.DNS{Name: svc.Spec.ExternalName, Port: int(p.Port)}
			} else if spec.Endpoints = endpointsOf(svc, p, sl); len(spec.Endpoints) == 0 {
				continue
			}
			if i > 0 {
				for _, h := range []string{"", ".svc", ".svc.cluster.local"} {
					spec.Hosts = append(spec.Hosts, net.JoinHostPort(svc.Name+"."+svc.Namespace+h, strconv.Itoa(int(p.Port))))
				}
			}
			out.Resources = append(out.Resources, &mesh.Resource{Kind: mesh.KindService, Namespace: svc.Namespace, Name: name, Spec: spec, File: origin})
		}
	}
	return out, nil
}

// endpointsOf are the instances of one Service port to balance over: the
// ready endpoints, else the serving terminating ones (every endpoint with
// publishNotReadyAddresses), each once, in address order.
func endpointsOf(svc *corev1.Service, p corev1.ServicePort, slices []*discoveryv1.EndpointSlice) []mesh.Endpoint {
	var ready, terminating []mesh.Endpoint
	seen := map[string]bool{}
	for _, sl := range slices {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32
		for _, sp := range sl.Ports {
			name := ""
			if sp.Name != nil {
				name = *sp.Name
			}
			if name == p.Name && sp.Port != nil && (sp.Protocol == nil || *sp.Protocol == corev1.ProtocolTCP) {
				port = *sp.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range sl.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			addr := net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port)))
			isReady := e.Conditions.Ready == nil || *e.Conditions.Ready
			serving := isReady
			if e.Conditions.Serving != nil {
				serving = *e.Conditions.Serving
			}
			isTerminating := e.Conditions.Terminating != nil && *e.Conditions.Terminating
			ep := mesh.Endpoint{Address: addr}
			if e.Zone != nil {
				ep.Zone = *e.Zone
			}
			switch {
			case seen[addr]:
				// Listed by two slices while the controller moves it.
			case isReady || svc.Spec.PublishNotReadyAddresses:
				seen[addr] = true
				ready = append(ready, ep)
			case serving && isTerminating:
				terminating = append(terminating, ep)
			}
		}
	}
	eps := ready
	if len(eps) == 0 {
		for _, ep := range terminating {
			if !seen[ep.Address] {
				seen[ep.Address] = true
				eps = append(eps, ep)
			}
		}
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].Address < eps[j].Address })
	return eps
}
