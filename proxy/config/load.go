package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"

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
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: name, Reason: "empty config"}}
		}
		return nil, decodeErrors(name, data, err)
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
	if err := Validate(name, data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}
