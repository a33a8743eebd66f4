// Package netns holds multi-host end-to-end tests of mesh identity and
// mTLS: the weft binary (control plane with its CA, sidecars, an app) runs
// in network namespaces the tests create, one per host, joined by veth
// pairs to a bridge in a hub namespace, on a private 10.77.X.0/24 that
// exists only inside those namespaces.
//
// It holds tests only and must not leave namespaces, links or processes
// behind; the tests skip when not root or when `ip` is missing.
package netns
