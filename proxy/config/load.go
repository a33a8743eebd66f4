package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// versionHexDigits is how much of the file's sha256 names a config with no
// version.
const versionHexDigits = 12

// Load reads, decodes and validates the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// Parse decodes data strictly (unknown fields and wrong types are errors),
// applies defaults and validates the result. name is used in error messages
// (a file path). Every error is an Errors value whose lines read
// "FILE:LINE: FIELD.PATH: reason". A config with no version gets the first
// 12 hex digits of data's sha256.
func Parse(name string, data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	var decodeErrs Errors
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: name, Reason: "empty config"}}
		}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, decodeErrors(name, data, err)
		}
		// yaml.v3 decodes everything else around a type error: validate
		// that too, so every problem is reported at once.
		decodeErrs = decodeErrors(name, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{{File: name, Line: extra.Line, Reason: "a config file holds one YAML document; remove the \"---\" and what follows, or merge it"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, decodeErrors(name, data, err)
	}
	if c.Version == "" {
		sum := sha256.Sum256(data)
		c.Version = hex.EncodeToString(sum[:])[:versionHexDigits]
	}
	c.ApplyDefaults()
	if err := Validate(name, data, &c); err != nil || decodeErrs != nil {
		return nil, mergeErrors(decodeErrs, err)
	}
	return &c, nil
}

// mergeErrors adds validation problems to decode problems, leaving out those
// about a field that failed to decode (it holds its zero value), and sorts
// them by line.
func mergeErrors(decodeErrs Errors, err error) error {
	var verrs Errors
	if err != nil && !errors.As(err, &verrs) {
		if decodeErrs == nil {
			return err
		}
		return errors.Join(decodeErrs, err)
	}
	out := append(Errors(nil), decodeErrs...)
	for _, v := range verrs {
		dup := false
		for _, d := range decodeErrs {
			if d.Path != "" && related(v.Path, d.Path) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, v)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// related reports whether path p is base or a field under it.
func related(p, base string) bool {
	if !strings.HasPrefix(p, base) {
		return false
	}
	rest := p[len(base):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}

// ParseJSON is Parse for a config written as JSON by a program (the control
// plane's snapshots): encoding/json decodes it strictly (unknown fields are
// errors), several times faster than the YAML decoder, then defaults and
// validation are Parse's. JSON is also YAML, so Parse reads the same text
// to the same config; a hand-written JSON file (with, say, a plugin config
// given as an object rather than a string) is for Parse. A problem found
// by validation carries its line, as with Parse.
func ParseJSON(name string, data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: name, Reason: "empty config"}}
		}
		return nil, Errors{{File: name, Reason: "decoding JSON: " + err.Error()}}
	}
	if dec.More() {
		return nil, Errors{{File: name, Reason: "a config holds one JSON value; something follows it"}}
	}
	if c.Version == "" {
		sum := sha256.Sum256(data)
		c.Version = hex.EncodeToString(sum[:])[:versionHexDigits]
	}
	c.ApplyDefaults()
	if err := Validate(name, data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}
