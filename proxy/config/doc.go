// Package config owns the sidecar's YAML schema: the types, their defaults,
// strict decoding and whole-config validation whose errors name the file,
// line and field. It must not start anything or hold runtime state: runtime
// packages compile a validated Config into their own immutable objects.
package config
