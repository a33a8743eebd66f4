// Package client owns the sidecar side of the control plane protocol: it
// holds the watch (a long poll on /v1/watch), applies each snapshot through
// an Applier (the proxy), answers ACK or NACK on /v1/ack, keeps an on-disk
// copy of the last applied snapshot and boots from it when the control
// plane cannot be reached, and reconnects with exponential backoff and
// jitter.
//
// It must not change a config it receives, and it never drops the config
// in force: an unreachable control plane or a refused snapshot leaves the
// last good one serving.
package client
