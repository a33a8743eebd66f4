// Package client owns the sidecar side of the control plane protocol: it
// holds the watch (a long poll on /v1/watch) on one of the control plane's
// replicas and fails over to the next when that one stops answering
// (endpoints.go: a list of URLs, a host name resolving to several
// addresses), applies each snapshot through an Applier (the proxy), answers
// ACK or NACK on /v1/ack, keeps an on-disk copy of the last applied
// snapshot and boots from it when no replica can be reached, and
// reconnects with exponential backoff and jitter once every replica has
// failed in turn.
//
// It must not change a config it receives, and it never drops the config
// in force: an unreachable control plane or a refused snapshot leaves the
// last good one serving.
package client
