package config

import (
	"encoding/json"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as "250ms", "1.5s", "2m" in YAML and JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr("line %d: a duration must be a string like \"250ms\" or \"2s\"", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return typeErr("line %d: bad duration %q: want a number with a unit (ms, s, m, h), e.g. \"250ms\"", n.Line, n.Value)
	}
	if v < 0 {
		return typeErr("line %d: duration %q is negative", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// typeErr is a decode error yaml.v3 collects instead of stopping at, so one
// pass reports every bad value in a file.
func typeErr(format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf(format, args...)}}
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON parses a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string like \"250ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// RawConfig is a plugin's configuration as the guest sees it: a YAML string
// is passed as is; any other YAML value (a map, a list) is turned into JSON.
type RawConfig string

// UnmarshalYAML accepts a string or any YAML value (turned into JSON).
func (r *RawConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!str" || n.Style != 0) {
		*r = RawConfig(n.Value)
		return nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	b, err := json.Marshal(jsonable(v))
	if err != nil {
		return fmt.Errorf("line %d: config cannot be turned into JSON: %w", n.Line, err)
	}
	*r = RawConfig(b)
	return nil
}

// jsonable turns yaml.v3's map[string]any (and nested values) into values
// encoding/json accepts.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = jsonable(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = jsonable(e)
		}
		return t
	default:
		return v
	}
}
