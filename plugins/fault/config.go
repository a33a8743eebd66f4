package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config is the fault filter's configuration.
type Config struct {
	// Delay pauses a share of requests before they go on.
	Delay *Delay `json:"delay,omitempty"`
	// Abort answers a share of requests locally.
	Abort *Abort `json:"abort,omitempty"`
	// Headers restrict faults to requests carrying all of them (an empty
	// value matches any value).
	Headers []HeaderMatch `json:"headers,omitempty"`
}

// Delay is a fixed delay for Percent of the requests.
type Delay struct {
	Percent  float64  `json:"percent"`
	Duration Duration `json:"duration"`
}

// Abort answers Percent of the requests with Status and Body.
type Abort struct {
	Percent float64 `json:"percent"`
	Status  int     `json:"status"`
	Body    string  `json:"body,omitempty"`
}

// HeaderMatch is one required header.
type HeaderMatch struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// Duration is a time.Duration written as "200ms" in JSON.
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"200ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// maxDelay keeps delays under the host's pause deadline (30 s).
const maxDelay = 25 * time.Second

// parseConfig reads and validates raw.
func parseConfig(raw []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if c.Delay == nil && c.Abort == nil {
		return nil, errors.New("config: set delay and/or abort")
	}
	if d := c.Delay; d != nil {
		if d.Percent < 0 || d.Percent > 100 {
			return nil, fmt.Errorf("config: delay.percent %v: want 0..100", d.Percent)
		}
		if v := time.Duration(d.Duration); v <= 0 || v > maxDelay {
			return nil, fmt.Errorf("config: delay.duration %v: want more than 0 and at most %v", v, maxDelay)
		}
	}
	if a := c.Abort; a != nil {
		if a.Percent < 0 || a.Percent > 100 {
			return nil, fmt.Errorf("config: abort.percent %v: want 0..100", a.Percent)
		}
		if a.Status < 200 || a.Status > 599 {
			return nil, fmt.Errorf("config: abort.status %d: want 200..599", a.Status)
		}
	}
	for i, h := range c.Headers {
		if h.Name == "" {
			return nil, fmt.Errorf("config: headers[%d]: name is required", i)
		}
		c.Headers[i].Name = strings.ToLower(h.Name)
	}
	return &c, nil
}

// decision is what happens to one request.
type decision struct {
	delay time.Duration
	abort bool
}

// decide picks the faults for a request that matched the header
// conditions, from two uniform draws in [0, 100).
func (c *Config) decide(delayDraw, abortDraw float64) decision {
	var d decision
	if c.Delay != nil && delayDraw < c.Delay.Percent {
		d.delay = time.Duration(c.Delay.Duration)
	}
	if c.Abort != nil && abortDraw < c.Abort.Percent {
		d.abort = true
	}
	return d
}

// tickPeriod is how often delayed streams are checked: a tenth of the
// delay, between 5 ms and 100 ms.
func (c *Config) tickPeriod() time.Duration {
	if c.Delay == nil {
		return 0
	}
	return min(max(time.Duration(c.Delay.Duration)/10, 5*time.Millisecond), 100*time.Millisecond)
}
