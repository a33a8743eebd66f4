// Package gatewayapi turns Gateway API routes attached to Services (the
// GAMMA mesh profile: HTTPRoute and GRPCRoute whose parentRefs name a
// core Service) into the control plane's TrafficRule resources, one per
// Service, with every route's matches merged in Gateway API precedence
// order; and it computes each route's status.parents entry for weft
// (Accepted, ResolvedRefs, PartiallyInvalid with the spec's reasons).
//
// It is pure data and functions, like control/mesh: it must not watch,
// store or write anything. The kube source gives it the routes, the
// ReferenceGrants and what it knows of Services and Filters, writes the
// rules to the store and the statuses back to the API server.
package gatewayapi
