// Package ctl owns `weft ctl`, the operator's command line for the control
// plane: apply, get, delete, status, set-weight, modules push/list and
// telemetry, all through the control plane's HTTP API.
//
// It must not read or write the control plane's data directory, and it
// holds no state: every command is a few API calls.
package ctl
