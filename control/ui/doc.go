// Package ui owns the control plane's mesh view: one HTML page with a
// little JavaScript (no build step, embedded with go:embed) served at /ui.
// It draws the services and the edges between them with requests/s, error
// rate and p99, canary weights, and each sidecar's config version, from
// the server's own /v1/status, /v1/telemetry and /v1/resources JSON. It
// must not compute anything the JSON API does not already say, nor change
// anything.
package ui
