package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Config is the routing filter's configuration.
type Config struct {
	// Header receives the chosen version (default "x-weft-version").
	Header string `json:"header,omitempty"`
	// Rules are tried in order; the first that matches picks the version.
	Rules []Rule `json:"rules,omitempty"`
	// Split shares the requests no rule matched between versions.
	Split *Split `json:"split,omitempty"`
	// Default is the version when neither a rule nor a split decides
	// (empty: the header is not set).
	Default string `json:"default,omitempty"`
	// TrustIncoming keeps a version header the client sent (default false:
	// it is removed, so clients cannot pick a version themselves).
	TrustIncoming bool `json:"trust_incoming,omitempty"`

	// choices are the versions chooseIndex picks from: each rule's, each
	// split version's, then the default (when set).
	choices []string
}

// Rule picks Version when its match holds.
type Rule struct {
	// Header matches a request header; Cookie a cookie. One of them.
	Header *Match `json:"header,omitempty"`
	Cookie *Match `json:"cookie,omitempty"`
	// Version to route to.
	Version string `json:"version"`
}

// Match is a name and an optional exact value (empty: present with any
// value).
type Match struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// Split is a weighted choice between versions.
type Split struct {
	// StickyHeader or StickyCookie names a user key: the same key always
	// gets the same version (hashed); requests without it are split at
	// random. Neither: every request is split at random.
	StickyHeader string `json:"sticky_header,omitempty"`
	StickyCookie string `json:"sticky_cookie,omitempty"`
	// Versions and their weights (any positive total).
	Versions []Weighted `json:"versions"`

	// sum is the weights' total.
	sum uint64
}

// Weighted is one version's share.
type Weighted struct {
	Version string `json:"version"`
	Weight  int    `json:"weight"`
}

// parseConfig reads and validates raw.
func parseConfig(raw []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if c.Header == "" {
		c.Header = "x-weft-version"
	}
	c.Header = strings.ToLower(c.Header)
	if len(c.Rules) == 0 && c.Split == nil && c.Default == "" {
		return nil, errors.New("config: set rules, split or default")
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		if (r.Header == nil) == (r.Cookie == nil) {
			return nil, fmt.Errorf("config: rules[%d]: set exactly one of header, cookie", i)
		}
		if m := r.Header; m != nil {
			if m.Name == "" {
				return nil, fmt.Errorf("config: rules[%d].header.name is required", i)
			}
			m.Name = strings.ToLower(m.Name)
		}
		if r.Cookie != nil && r.Cookie.Name == "" {
			return nil, fmt.Errorf("config: rules[%d].cookie.name is required", i)
		}
		if !validVersion(r.Version) {
			return nil, fmt.Errorf("config: rules[%d].version %q: want a non-empty token", i, r.Version)
		}
	}
	if s := c.Split; s != nil {
		if s.StickyHeader != "" && s.StickyCookie != "" {
			return nil, errors.New("config: split: set at most one of sticky_header, sticky_cookie")
		}
		s.StickyHeader = strings.ToLower(s.StickyHeader)
		if len(s.Versions) == 0 {
			return nil, errors.New("config: split.versions is empty")
		}
		sum := 0
		for i, w := range s.Versions {
			if !validVersion(w.Version) || w.Weight < 0 {
				return nil, fmt.Errorf("config: split.versions[%d]: version %q weight %d", i, w.Version, w.Weight)
			}
			// pick maps draws onto the total: it must not wrap around.
			if w.Weight > math.MaxInt-sum {
				return nil, fmt.Errorf("config: split.versions[%d]: weight %d: the weights add up to more than %d", i, w.Weight, math.MaxInt)
			}
			sum += w.Weight
		}
		if total(s.Versions) == 0 {
			return nil, errors.New("config: split: weights add up to 0")
		}
		s.sum = uint64(total(s.Versions))
	}
	if c.Default != "" && !validVersion(c.Default) {
		return nil, fmt.Errorf("config: default %q: want a token", c.Default)
	}
	for _, r := range c.Rules {
		c.choices = append(c.choices, r.Version)
	}
	if s := c.Split; s != nil {
		for _, w := range s.Versions {
			c.choices = append(c.choices, w.Version)
		}
	}
	if c.Default != "" {
		c.choices = append(c.choices, c.Default)
	}
	return &c, nil
}

func validVersion(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == ',' || c == ';' {
			return false
		}
	}
	return true
}

func total(ws []Weighted) int {
	t := 0
	for _, w := range ws {
		t += w.Weight
	}
	return t
}
