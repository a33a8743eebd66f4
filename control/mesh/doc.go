// Package mesh owns the control plane's resource model: the YAML/JSON kinds
// an operator writes (Service, TrafficRule, Filter, Policy, Sidecar), their
// whole-mesh validation with errors that name the resource, field and
// reason (and Warnings for what is accepted but unsafe), and the compiler
// that turns a valid mesh into one proxy config.Config per sidecar.
//
// It is pure data and functions: it must not store, watch, serve or fetch
// anything. Which Wasm module digests exist and where sidecars fetch modules
// from are given to it (Options).
package mesh
